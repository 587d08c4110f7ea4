"""Checks before a fit starts: the log folder is writable and its disk has room."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from lightning import Callback, LightningModule, Trainer

from adbench.callbacks.run_dir import run_dir
from adbench.errors import ConfigError


def _existing_parent(path: Path) -> Path:
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_writable(folder: Path, min_free_mb: float) -> None:
    """Raises ConfigError when ``folder`` (or the parent it would be created in) cannot take files."""
    parent = _existing_parent(folder)
    try:
        with tempfile.NamedTemporaryFile(dir=parent, prefix=".adbench-write-test-"):
            pass
    except OSError as error:
        raise ConfigError(
            f"log folder {folder} is not writable ({error.strerror}); choose another with "
            "--trainer.default_root_dir or the logger's save_dir"
        ) from None
    free_mb = shutil.disk_usage(parent).free / 2**20
    if free_mb < min_free_mb:
        raise ConfigError(
            f"only {free_mb:.0f} MB free on the disk of {folder} (checkpoints and results need at least "
            f"{min_free_mb:.0f} MB); free space or choose another folder with --trainer.default_root_dir"
        )


class Preflight(Callback):
    """Fails fast, before any training step, when results could not be written.

    Args:
        min_free_mb: free disk space required in the log folder.
    """

    def __init__(self, min_free_mb: float = 200.0) -> None:
        self.min_free_mb = min_free_mb

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        folder = run_dir(trainer)  # on every rank: trainer.log_dir is a collective call under DDP
        if trainer.is_global_zero:
            check_writable(folder, self.min_free_mb)
