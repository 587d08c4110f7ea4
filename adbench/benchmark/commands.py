"""``adbench benchmark``: run a grid of configs x categories x seeds into one results table."""

from __future__ import annotations

import argparse
from collections.abc import Sequence


def add_launcher_options(parser: argparse.ArgumentParser) -> None:
    """``--launcher`` and ``--gpus``: how the cells of a grid run (also used by ``experiments/run.py``)."""
    parser.add_argument(
        "--launcher",
        choices=["auto", "inprocess", "processes", "submitit"],
        default="auto",
        help="auto: one process per GPU when several GPUs are visible, else cells one after another in this "
        "process; processes: one process per GPU; submitit: each cell a SLURM job (pip install 'adbench[slurm]')",
    )
    parser.add_argument(
        "--gpus",
        type=int,
        default=None,
        help="processes launcher: how many cells run at once, one per GPU (default: all visible GPUs); on a "
        "CPU-only machine, that many cell processes share the cores (each gets cores/N threads unless "
        "OMP_NUM_THREADS is set)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="adbench benchmark",
        description="Fit and test every config x category x seed of a benchmark file. Results go to "
        "<output_dir>/<name>/: runs.csv, summary.md, plots (PNG), errors/ (a traceback per failed cell); each cell's logs, checkpoints and anomaly-map panels go where its config's loggers point (runs.csv's run_dir column). "
        "Rerunning skips finished cells and retries failed or interrupted ones.",
    )
    parser.add_argument("--config", required=True, help="benchmark YAML (see configs/benchmark_demo.yaml)")
    add_launcher_options(parser)
    parser.add_argument("--slurm_partition", default=None, help="submitit: SLURM partition")
    parser.add_argument(
        "--slurm_timeout_min", type=int, default=24 * 60, help="submitit: job time limit (minutes)"
    )
    parser.add_argument("--slurm_gpus_per_node", type=int, default=1, help="submitit: GPUs per job")
    parser.add_argument(
        "--slurm_cluster",
        default=None,
        help="submitit: force a cluster type ('local' runs jobs as local processes)",
    )
    parser.add_argument("--no_wandb_summary", action="store_true", help="skip the final W&B summary run")
    return parser


def benchmark_main(argv: Sequence[str]) -> int:
    """Runs ``adbench benchmark``; returns the exit code (1 when a cell failed)."""
    args = build_parser().parse_args(list(argv))
    from adbench.benchmark.grid import load_grid
    from adbench.benchmark.plots import plot_category_bars, plot_speed_scatter
    from adbench.benchmark.results import summary_tables
    from adbench.benchmark.runner import run_grid
    from adbench.benchmark.wandb_summary import log_summary_run

    grid = load_grid(args.config)
    slurm = {"timeout_min": args.slurm_timeout_min, "gpus_per_node": args.slurm_gpus_per_node}
    if args.slurm_partition:
        slurm["slurm_partition"] = args.slurm_partition
    if args.slurm_cluster:
        slurm["cluster"] = args.slurm_cluster
    frame = run_grid(grid, launcher=args.launcher, gpus=args.gpus, slurm=slurm)
    plots = plot_category_bars(frame, grid.results_dir)
    scatter = plot_speed_scatter(frame, grid.results_dir)
    plots += [scatter] if scatter else []
    if not args.no_wandb_summary:
        log_summary_run(frame, grid.name, grid.results_dir, plots)
    for metric, table in summary_tables(frame).items():
        print(f"\n{metric} (%)\n{(100 * table).round(1).to_string()}")
    print(f"\nresults: {grid.results_dir}/ (runs.csv, summary.md, {len(plots)} plots)")
    return int((frame["status"] != "ok").any())
