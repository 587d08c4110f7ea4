"""AnomalyModule: the loop every detector shares (maps, scores, checks); subclasses add forward and loss."""

from __future__ import annotations

import warnings
from typing import Any

import torch
import torch.nn.functional as F
from lightning import LightningModule
from torch import Tensor

from adbench.data.batch import Batch
from adbench.errors import AdbenchError


class NonFiniteError(AdbenchError):
    """A loss or anomaly map became NaN or infinite."""


class AnomalyModule(LightningModule):
    """Base class of every detector.

    Subclasses implement:

    * ``compute_loss(batch) -> dict[str, Tensor]`` with a ``"loss"`` entry (automatic optimization), or
      their own ``training_step`` (manual optimization);
    * ``anomaly_map(image) -> Tensor (B, 1, h, w)`` at any resolution;
    * optionally ``image_score(anomaly_map) -> Tensor (B,)`` from the full-resolution map (default: max).

    ``validation_step``, ``test_step`` and ``predict_step`` return ``{"anomaly_map": (B, 1, H, W),
    "pred_score": (B,)}`` at the input resolution plus the batch fields; the metrics callback turns test
    outputs into ``metrics.json``.
    """

    #: Short model name used in run names and result tables (subclasses set it).
    model_name: str = "model"

    def __init__(self) -> None:
        super().__init__()
        self.train_seconds: float = 0.0

    # ------------------------------------------------------------------------------------------------ subclass API
    def compute_loss(self, batch: Batch) -> dict[str, Tensor]:
        """Training losses of a batch; ``"loss"`` is optimized, every entry is logged."""
        raise NotImplementedError

    def anomaly_map(self, image: Tensor) -> Tensor:
        """Args: image (B, 3, H, W). Returns: anomaly map (B, 1, h, w), higher is more anomalous."""
        raise NotImplementedError

    def image_score(self, anomaly_map: Tensor) -> Tensor:
        """Args: anomaly_map (B, 1, H, W) at input resolution. Returns: image scores (B,)."""
        return anomaly_map.flatten(1).amax(dim=1)

    @property
    def expected_normalization(self) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
        """(mean, std) the model's pretrained parts expect, or None when any normalization works."""
        return None

    # ---------------------------------------------------------------------------------------------- shared loop
    def predict(self, image: Tensor) -> tuple[Tensor, Tensor]:
        """Full-resolution maps and image scores; by default ``anomaly_map`` upsampled, then ``image_score``.

        Models whose torch model predicts both itself (PatchCore) override this instead.

        Args:
            image: (B, 3, H, W).

        Returns:
            anomaly maps (B, 1, H, W) and image scores (B,).
        """
        low_res = self.anomaly_map(image)
        anomaly_map = F.interpolate(low_res, size=image.shape[-2:], mode="bilinear", align_corners=False)
        return anomaly_map, self.image_score(anomaly_map)

    def predict_batch(self, batch: Batch) -> dict[str, Any]:
        """Full-resolution anomaly maps and image scores for a batch, with the batch fields."""
        anomaly_map, pred_score = self.predict(batch.image)
        if not torch.isfinite(anomaly_map).all():
            bad = [
                p
                for p, ok in zip(batch.path, torch.isfinite(anomaly_map).flatten(1).all(1), strict=True)
                if not ok
            ]
            more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
            raise NonFiniteError(
                f"{self.model_name}: the anomaly map of {bad[0]}{more} contains NaN/inf; "
                "the model diverged or its checkpoint is broken: retrain or check the checkpoint"
            )
        return {
            "anomaly_map": anomaly_map,
            "pred_score": pred_score,
            "image": batch.image,
            "label": batch.label,
            "mask": batch.mask,
            "path": batch.path,
            "index": batch.index,
        }

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        losses = self.compute_loss(batch)
        loss = losses["loss"]
        if not torch.isfinite(loss):
            raise NonFiniteError(
                f"{self.model_name}: training loss is {loss.item()} at step {self.global_step} (epoch "
                f"{self.current_epoch}); lower the learning rate, enable gradient clipping "
                "(--trainer.gradient_clip_val 1.0) or check the input images"
            )
        self.log_dict(
            {f"train/{k}": v.detach() for k, v in losses.items()}, prog_bar=True, batch_size=batch.batch_size
        )
        return loss

    def validation_step(self, batch: Batch, batch_idx: int) -> dict[str, Any]:
        with torch.no_grad():
            losses = self.compute_loss(batch)
        self.log_dict({f"val/{k}": v for k, v in losses.items()}, sync_dist=True, batch_size=batch.batch_size)
        return self.predict_batch(batch)

    def test_step(self, batch: Batch, batch_idx: int) -> dict[str, Any]:
        return self.predict_batch(batch)

    def predict_step(self, batch: Batch, batch_idx: int, dataloader_idx: int = 0) -> dict[str, Any]:
        return self.predict_batch(batch)

    # --------------------------------------------------------------------------------------------------- checks
    def _check_normalization(self) -> None:
        expected = self.expected_normalization
        datamodule = getattr(self.trainer, "datamodule", None)
        if expected is None or datamodule is None or not hasattr(datamodule, "mean"):
            return
        mean, std = expected
        close = torch.allclose(
            torch.tensor(mean), torch.tensor(datamodule.mean, dtype=torch.float32), atol=1e-3
        )
        close &= torch.allclose(
            torch.tensor(std), torch.tensor(datamodule.std, dtype=torch.float32), atol=1e-3
        )
        if not close:
            warnings.warn(
                f"{self.model_name}: the backbone expects mean={tuple(mean)} std={tuple(std)} but the data is "
                f"normalized with mean={datamodule.mean} std={datamodule.std}; set --data.init_args.mean/std",
                stacklevel=2,
            )

    def on_fit_start(self) -> None:
        self._check_normalization()

    def on_test_start(self) -> None:
        self._check_normalization()

    def configure_callbacks(self) -> list:
        """Adds the shared callbacks (preflight checks, random state in checkpoints, timing, metrics,
        anomaly-map panels) unless the trainer already has them."""
        from adbench.callbacks import AnomalyMetrics, Preflight, RandomState, Timing, Visualizer

        present = [type(c) for c in self.trainer.callbacks] if self._trainer is not None else []
        defaults = (Preflight, RandomState, Timing, AnomalyMetrics, Visualizer)
        return [cls() for cls in defaults if not any(issubclass(t, cls) for t in present)]

    # ----------------------------------------------------------------------------------------------- checkpoint
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["adbench"] = {"train_seconds": self.train_seconds, "model_name": self.model_name}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.train_seconds = float(checkpoint.get("adbench", {}).get("train_seconds", 0.0))

    def describe(self) -> dict[str, str]:
        """Names that identify the run: the model (for loggers and result tables)."""
        return {"model": self.model_name}
