"""Runs one experiment of experiments/ through adbench's benchmark machinery.

Every experiment folder holds one benchmark grid per scale: ``tiny.yaml`` (seconds, what the tests run),
``demo.yaml`` (the default: minutes on a CPU, on the embedded demo data) and ``paper.yaml`` (the paper's
setup, for GPUs). This script picks the grid of ``--scale``, runs it like ``adbench benchmark`` (results
table, bar plots, W&B group named after the grid) and prints where the results are::

    python experiments/run.py fractalad_kd                 # demo scale
    python experiments/run.py fractalad_kd --scale paper   # the paper's setup (needs the datasets)
    python experiments/run.py dsr_stages --scale tiny --output-dir /tmp/x -- --data.init_args.root=/tmp/demo

Experiments with their own script (``toy.py`` of adtr_identity_shortcut) run it directly.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence
from pathlib import Path

EXPERIMENTS = Path(__file__).resolve().parent
REPOSITORY = EXPERIMENTS.parent
SCALES = ("tiny", "demo", "paper")


def experiment_names() -> list[str]:
    """Folders of experiments/ with at least one grid file."""
    return sorted(
        p.name
        for p in EXPERIMENTS.iterdir()
        if p.is_dir() and any((p / f"{s}.yaml").is_file() for s in SCALES)
    )


def build_parser() -> argparse.ArgumentParser:
    from adbench.benchmark.commands import add_launcher_options

    parser = argparse.ArgumentParser(
        prog="python experiments/run.py",
        description="Run one experiment (a benchmark grid per scale in experiments/<name>/) and write its "
        "runs.csv, summary.md and plots under the grid's output_dir (experiments/<name>/results/<scale> "
        "unless --output-dir is given).",
    )
    parser.add_argument("name", help=f"experiment folder: {', '.join(experiment_names()) or '(none yet)'}")
    parser.add_argument(
        "--scale",
        choices=SCALES,
        default="demo",
        help="tiny: seconds (the tests); demo: minutes on a CPU with the embedded demo data (default); "
        "paper: the paper's setup (GPUs, real datasets)",
    )
    parser.add_argument(
        "--output-dir", default=None, help="write results here instead of the grid's output_dir"
    )
    add_launcher_options(parser)
    parser.add_argument(
        "overrides",
        nargs="*",
        help="after `--`: command-line overrides appended to every cell (e.g. --data.init_args.root=DIR)",
    )
    return parser


def load_experiment(name: str, scale: str, output_dir: str | None = None, overrides: Sequence[str] = ()):
    """The experiment's grid for ``scale``, with ``overrides`` appended to every cell.

    Raises:
        adbench.errors.ConfigError: unknown experiment or scale.
    """
    from adbench.benchmark.grid import load_grid
    from adbench.errors import ConfigError

    path = EXPERIMENTS / name / f"{scale}.yaml"
    if not path.is_file():
        raise ConfigError(
            f"experiment {name!r} has no {scale} grid ({path} is missing); experiments: "
            f"{', '.join(experiment_names())}"
        )
    grid = load_grid(path)
    grid.cells = [dataclasses.replace(c, args=(*c.args, *overrides)) for c in grid.cells]
    if output_dir is not None:
        grid.output_dir = Path(output_dir)
    return grid


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the experiment; returns 1 when a cell failed."""
    argv = list(sys.argv[1:] if argv is None else argv)
    # Split at `--` first: argparse fills `name` and the `overrides` positional in one go, so overrides after
    # `NAME --scale tiny --` would be left over as unrecognized arguments.
    overrides = argv[argv.index("--") + 1 :] if "--" in argv else []
    argv = argv[: argv.index("--")] if "--" in argv else argv
    args = build_parser().parse_args(argv)
    args.overrides = [*args.overrides, *overrides]
    from adbench.benchmark.plots import plot_category_bars
    from adbench.benchmark.runner import run_grid

    grid = load_experiment(args.name, args.scale, args.output_dir, args.overrides)
    frame = run_grid(grid, launcher=args.launcher, gpus=args.gpus)
    plot_category_bars(frame, grid.results_dir)
    print(f"results: {grid.results_dir}/summary.md (runs.csv, bars_*.png)")
    report_failures(frame)
    return int((frame["status"] != "ok").any())


def report_failures(frame) -> None:
    """Prints each distinct error of the failed cells once (stderr), with how many cells it stopped."""
    failed = frame[frame["status"] != "ok"]
    if failed.empty:
        return
    messages = failed["error"].fillna("").astype(str).str.replace(r" \(log: [^)]*\)$", "", regex=True)
    print(f"{len(failed)} of {len(frame)} cells failed:", file=sys.stderr)
    for message, count in messages.value_counts(sort=False).items():
        print(f"  {count} x {message or 'unknown error'}", file=sys.stderr)
    logs = failed["error"].astype(str).str.extract(r"\(log: ([^)]*)\)$")[0].dropna()
    if not logs.empty:
        print(f"  tracebacks: {Path(logs.iloc[0]).parent}/", file=sys.stderr)


if __name__ == "__main__":
    sys.path.insert(0, str(REPOSITORY))
    sys.exit(main())
