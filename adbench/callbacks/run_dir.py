"""Where a run's files go."""

from __future__ import annotations

from pathlib import Path

from lightning import Trainer


def run_dir(trainer: Trainer) -> Path:
    """The run's log folder: the first logger's versioned folder, else ``default_root_dir``."""
    return Path(trainer.log_dir or trainer.default_root_dir)
