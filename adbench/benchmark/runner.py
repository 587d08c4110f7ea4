"""Runs a benchmark grid cell by cell (fit then test, in-process), recording every cell's outcome."""

from __future__ import annotations

import traceback
from pathlib import Path
from typing import Any

import pandas as pd

from adbench.benchmark.grid import Cell, Grid
from adbench.benchmark.results import RUN_COLUMNS, read_runs, write_runs, write_summary


def run_cell(cell: Cell, root_dir: Path) -> dict[str, Any]:
    """Fits and tests one cell through the same CLI machinery as ``adbench fit``; returns its result row."""
    from adbench.callbacks import AnomalyMetrics
    from adbench.cli import build_cli_class

    args = [
        "fit",
        "--config", cell.config,
        f"--data.init_args.category={cell.category}",
        f"--seed_everything={cell.seed}",
        f"--trainer.default_root_dir={root_dir}",
        *cell.args,
    ]  # fmt: skip
    cli = build_cli_class()(args=args)
    cli.trainer.test(cli.model, datamodule=cli.datamodule, verbose=False)
    metrics = next(c for c in cli.trainer.callbacks if isinstance(c, AnomalyMetrics))
    return {**metrics.results, "seed": cell.seed, "run_dir": str(cli.trainer.log_dir)}


def _finish_wandb() -> None:
    try:
        import wandb

        if wandb.run is not None:
            wandb.finish(quiet=True)
    except ImportError:
        pass


def _row_key(row: dict[str, Any]) -> str:
    return f"{Path(str(row['config'])).stem}|{row['category']}|{int(row['seed'])}"


def run_grid(grid: Grid) -> pd.DataFrame:
    """Runs every unfinished cell; rewrites runs.csv and summary.md atomically after each one.

    Cells already recorded with status ``ok`` are skipped, so an interrupted benchmark resumes where it was;
    failed cells are run again.
    """
    results_dir = grid.results_dir
    results_dir.mkdir(parents=True, exist_ok=True)
    runs_path = results_dir / "runs.csv"
    rows = {_row_key(r): r for r in read_runs(runs_path).to_dict("records")}
    for number, cell in enumerate(grid.cells, start=1):
        if rows.get(cell.key, {}).get("status") == "ok":
            continue
        print(f"[{number}/{len(grid.cells)}] {cell.config} category={cell.category} seed={cell.seed}", flush=True)
        try:
            row = {**run_cell(cell, results_dir / "runs"), "status": "ok", "error": ""}
        except Exception as error:  # noqa: BLE001 - a failing cell is recorded and the grid goes on
            log = results_dir / "errors" / f"{cell.key.replace('|', '_')}.log"
            log.parent.mkdir(parents=True, exist_ok=True)
            log.write_text(traceback.format_exc())
            message = str(error).strip().splitlines()[-1] if str(error).strip() else type(error).__name__
            row = {"category": cell.category, "seed": cell.seed, "status": "failed", "error": message}
        finally:
            _finish_wandb()
        rows[cell.key] = {**row, "config": cell.config}
        frame = pd.DataFrame(list(rows.values())).reindex(columns=RUN_COLUMNS)
        write_runs(frame, runs_path)
        write_summary(frame, results_dir / "summary.md", f"Benchmark {grid.name}")
    return pd.DataFrame(list(rows.values())).reindex(columns=RUN_COLUMNS)
