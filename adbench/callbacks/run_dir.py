"""Where a run's files go."""

from __future__ import annotations

from pathlib import Path

from lightning import Trainer


def run_dir(trainer: Trainer) -> Path:
    """The run's log folder: the first logger's versioned folder, else ``default_root_dir``.

    Call it on every process: under DDP ``trainer.log_dir`` broadcasts rank zero's folder (a collective
    operation), so calling it on rank zero only would hang.
    """
    return Path(trainer.log_dir or trainer.default_root_dir)
