"""Weights & Biases logging that never prompts or hangs: offline unless an API key is configured."""

from __future__ import annotations

import netrc
import os
from pathlib import Path

from lightning.pytorch.loggers import WandbLogger as _LightningWandbLogger


def wandb_has_credentials() -> bool:
    """True when ``WANDB_API_KEY`` is set or ``~/.netrc`` has an entry for the W&B API host."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        entries = netrc.netrc(Path.home() / ".netrc").hosts
    except (OSError, netrc.NetrcParseError):
        return False
    host = os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai").split("://")[-1].split("/")[0]
    return host in entries


class WandbLogger(_LightningWandbLogger):
    """Lightning's WandbLogger with explicit run grouping and automatic offline mode.

    Without credentials (no ``WANDB_API_KEY`` and no netrc entry) the run is written offline under
    ``save_dir/wandb`` and can be uploaded later with ``wandb sync``. ``WANDB_MODE`` set by the user wins.

    Args:
        name: run name (derived from model, dataset and category when left empty by the CLI).
        project: W&B project.
        group: W&B group; runs of one benchmark or study share it.
        tags: W&B tags (model, dataset and category are added by the CLI).
        job_type: W&B job type (fit, test, ...).
        save_dir: local folder of the run files.
        offline: force offline mode.
        log_model: upload checkpoints as W&B artifacts.
    """

    def __init__(
        self,
        name: str | None = None,
        project: str = "adbench",
        group: str | None = None,
        tags: list[str] | None = None,
        job_type: str | None = None,
        save_dir: str = "results",
        offline: bool = False,
        log_model: bool = False,
    ) -> None:
        offline = (
            offline or os.environ.get("WANDB_MODE") in ("offline", "disabled") or not wandb_has_credentials()
        )
        if offline:
            os.environ.setdefault("WANDB_MODE", "offline")
        os.environ.setdefault("WANDB_SILENT", "true")
        Path(save_dir).mkdir(parents=True, exist_ok=True)
        super().__init__(
            name=name,
            project=project,
            save_dir=save_dir,
            offline=offline,
            log_model=log_model,
            group=group,
            tags=tags,
            job_type=job_type,
        )
