"""Test metrics: accumulated over the test set (DDP-synced), logged, and written to ``metrics.json``."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from lightning import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_info

from adbench.callbacks.run_dir import run_dir
from adbench.callbacks.timing import Timing
from adbench.io import atomic_write_json
from adbench.metrics import ImageAUROC, ImageAveragePrecision, ImageF1Max, PixelMetrics


def format_table(rows: dict[str, Any]) -> str:
    """A two-column text table of a result dict (numbers with 4 decimals)."""
    width = max(len(k) for k in rows)
    lines = []
    for key, value in rows.items():
        shown = f"{value:.4f}" if isinstance(value, float) else str(value)
        lines.append(f"  {key:<{width}}  {shown}")
    return "\n".join(lines)


class AnomalyMetrics(Callback):
    """Computes image AUROC, pixel AUROC, pixel AUPRO, image F1-max and pixel/image AP on raw test scores.

    Results are logged as ``test/<name>`` and written (rank zero, atomically) to ``<log dir>/metrics.json``
    together with the run's names (model, dataset, category) and the Timing callback's measurements.

    Args:
        fpr_limit: upper FPR limit of the AUPRO integral.
        pixel_metrics: compute pixel-level metrics (skipped anyway when the test set has no masks).
        filename: name of the results file in the log dir.
    """

    def __init__(
        self, fpr_limit: float = 0.3, pixel_metrics: bool = True, filename: str = "metrics.json"
    ) -> None:
        self.fpr_limit = fpr_limit
        self.pixel_metrics = pixel_metrics
        self.filename = filename
        self.results: dict[str, Any] = {}
        self._image: dict[str, Any] = {}
        self._pixel: PixelMetrics | None = None

    def on_test_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        device = pl_module.device
        self._image = {
            "image_AUROC": ImageAUROC().to(device),
            "image_F1max": ImageF1Max().to(device),
            "image_AP": ImageAveragePrecision().to(device),
        }
        datamodule = getattr(trainer, "datamodule", None)
        use_pixels = self.pixel_metrics and getattr(datamodule, "has_pixel_labels", True)
        self._pixel = PixelMetrics(fpr_limit=self.fpr_limit).to(device) if use_pixels else None

    def on_test_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        index = outputs["index"]
        for metric in self._image.values():
            metric.update(outputs["pred_score"].detach(), outputs["label"], index)
        if self._pixel is not None:
            self._pixel.update(outputs["anomaly_map"].detach(), outputs["mask"], index)

    def on_test_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        values = {name: float(metric.compute()) for name, metric in self._image.items()}
        pixel = self._pixel.compute() if self._pixel is not None else {}
        for name in ("pixel_AUROC", "pixel_AUPRO", "pixel_AP"):
            values[name] = float(pixel[name]) if name in pixel else float("nan")
        pl_module.log_dict({f"test/{k}": v for k, v in values.items()}, rank_zero_only=True)
        names = dict(pl_module.describe()) if hasattr(pl_module, "describe") else {}
        datamodule = getattr(trainer, "datamodule", None)
        if datamodule is not None and hasattr(datamodule, "describe"):
            names.update(datamodule.describe())
        timing = next((c for c in trainer.callbacks if isinstance(c, Timing)), None)
        self.results = {**names, **values, **(timing.summary(pl_module) if timing else {})}
        if datamodule is not None and hasattr(datamodule, "dataset"):
            self.results["test_images"] = len(datamodule.dataset("test"))
        for metric in [*self._image.values(), *([self._pixel] if self._pixel is not None else [])]:
            metric.reset()
        folder = run_dir(trainer)  # on every rank: trainer.log_dir is a collective call under DDP
        if trainer.is_global_zero:
            path = atomic_write_json(folder / self.filename, self.results)
            rank_zero_info(f"Test results ({path}):\n{format_table(self.results)}")
            upload_results(trainer, path, self.results)


def upload_results(trainer: Trainer, path: Path, results: dict[str, Any]) -> None:
    """Attaches metrics.json and its values to the W&B run; a logger failure only warns (the file is written)."""
    from lightning.pytorch.loggers import WandbLogger

    for logger in trainer.loggers:
        if not isinstance(logger, WandbLogger):
            continue
        try:
            logger.experiment.summary.update({f"test/{k}": v for k, v in results.items()})
            logger.experiment.save(str(path), base_path=str(path.parent), policy="now")
        except Exception as error:  # noqa: BLE001 - never lose local results to a logging problem
            warnings.warn(
                f"could not upload {path} to W&B ({error}); the local file is complete", stacklevel=2
            )
