"""``adbench benchmark``: run a grid of configs x categories x seeds into one results table."""

from __future__ import annotations

import argparse
from collections.abc import Sequence


def benchmark_main(argv: Sequence[str]) -> int:
    """Runs ``adbench benchmark --config FILE``; returns the exit code (1 when a cell failed)."""
    parser = argparse.ArgumentParser(
        prog="adbench benchmark",
        description="Fit and test every config x category x seed of a benchmark file; results go to "
        "<output_dir>/<name>/{runs.csv, summary.md}. Rerunning skips finished cells.",
    )
    parser.add_argument("--config", required=True, help="benchmark YAML (see configs/benchmark_demo.yaml)")
    args = parser.parse_args(list(argv))
    from adbench.benchmark.grid import load_grid
    from adbench.benchmark.results import summary_tables
    from adbench.benchmark.runner import run_grid

    grid = load_grid(args.config)
    frame = run_grid(grid)
    for metric, table in summary_tables(frame).items():
        print(f"\n{metric}\n{(100 * table).round(1).to_string()}")
    print(f"\nresults: {grid.results_dir / 'runs.csv'}, {grid.results_dir / 'summary.md'}")
    return int((frame["status"] != "ok").any())
