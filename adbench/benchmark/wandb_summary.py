"""A final W&B run per benchmark that holds its tables and plots, so the dashboard compares models."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import pandas as pd

from adbench.benchmark.results import summary_tables


def log_summary_run(
    frame: pd.DataFrame, name: str, results_dir: Path, plots: list[Path], project: str = "adbench"
) -> None:
    """Logs runs.csv, the per-metric tables and the plots as one W&B run (offline without credentials).

    A W&B failure is reported as a warning: the local result files are already complete.
    """
    try:
        import wandb

        from adbench.loggers import wandb_has_credentials

        mode = "online" if wandb_has_credentials() else "offline"
        run = wandb.init(
            project=project, group=name, name=f"{name}-summary", job_type="summary", dir=str(results_dir),
            mode=None if "WANDB_MODE" in os.environ else mode, reinit="finish_previous",
        )  # fmt: skip
        run.log({"runs": wandb.Table(dataframe=frame.astype(str))})
        for metric, table in summary_tables(frame).items():
            flat = (100 * table).round(2).reset_index()
            flat.columns = [str(c) for c in flat.columns]
            run.log({f"summary/{metric}": wandb.Table(dataframe=flat)})
        for plot in plots:
            run.log({f"plots/{plot.stem}": wandb.Image(str(plot))})
        run.finish()
    except Exception as error:  # noqa: BLE001 - logging must never lose or block local results
        warnings.warn(
            f"W&B summary run for {name} failed ({error}); local results are complete", stacklevel=2
        )
