"""Anomaly-map panels (image | ground truth | overlay) saved as PNG and logged to W&B."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning import Callback, LightningModule, Trainer
from PIL import Image

from adbench.callbacks.run_dir import run_dir


def _colormap(values: np.ndarray) -> np.ndarray:
    """Maps values in [0, 1] (H, W) to RGB uint8 (H, W, 3) with matplotlib's 'jet'."""
    from matplotlib import colormaps

    return (colormaps["jet"](np.clip(values, 0, 1))[..., :3] * 255).astype(np.uint8)


def render_panel(
    image: np.ndarray, mask: np.ndarray, anomaly_map: np.ndarray, vmin: float, vmax: float, alpha: float = 0.5
) -> np.ndarray:
    """One row: the image, its ground truth (white on black, outline on the image) and the map overlay.

    Args:
        image: (H, W, 3) uint8.
        mask: (H, W) in {0, 1}.
        anomaly_map: (H, W) raw scores.
        vmin: score shown as the coldest colour.
        vmax: score shown as the hottest colour.
        alpha: heat-map opacity.

    Returns:
        (H, 3W + 2 * gap, 3) uint8.
    """
    scaled = (anomaly_map - vmin) / max(vmax - vmin, 1e-12)
    overlay = (1 - alpha) * image.astype(np.float32) + alpha * _colormap(scaled).astype(np.float32)
    truth = np.repeat((mask[..., None] > 0.5).astype(np.uint8) * 255, 3, axis=2)
    gap = np.full((image.shape[0], 4, 3), 255, dtype=np.uint8)
    return np.concatenate([image, gap, truth, gap, overlay.clip(0, 255).astype(np.uint8)], axis=1)


class Visualizer(Callback):
    """Saves panels for the first test images of each defect type and logs them to W&B loggers.

    All panels share one colour scale (the 1st and 99.9th percentiles of the kept maps), so panels compare.

    Args:
        max_images: how many test images to render (spread over normal and each defect type).
        folder: sub-folder of the log dir for the PNG files.
    """

    def __init__(self, max_images: int = 16, folder: str = "images") -> None:
        self.max_images = max_images
        self.folder = folder
        self._kept: list[dict[str, Any]] = []
        self._per_defect: dict[str, int] = {}

    def on_test_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._kept, self._per_defect = [], {}

    def _denormalize(self, trainer: Trainer, image: torch.Tensor) -> np.ndarray:
        datamodule = getattr(trainer, "datamodule", None)
        mean = torch.tensor(getattr(datamodule, "mean", (0.0, 0.0, 0.0))).view(3, 1, 1)
        std = torch.tensor(getattr(datamodule, "std", (1.0, 1.0, 1.0))).view(3, 1, 1)
        rgb = (image.float().cpu() * std + mean).clamp(0, 1)
        return (rgb.permute(1, 2, 0).numpy() * 255).astype(np.uint8)

    def on_test_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if not trainer.is_global_zero:
            return
        for i, path in enumerate(outputs["path"]):
            defect = Path(path).parent.name
            quota = max(1, self.max_images // 4)
            if len(self._kept) >= self.max_images or self._per_defect.get(defect, 0) >= quota:
                continue
            self._per_defect[defect] = self._per_defect.get(defect, 0) + 1
            self._kept.append(
                {
                    "image": self._denormalize(trainer, outputs["image"][i]),
                    "mask": outputs["mask"][i, 0].cpu().numpy(),
                    "map": outputs["anomaly_map"][i, 0].float().cpu().numpy(),
                    "score": float(outputs["pred_score"][i]),
                    "name": f"{defect}_{Path(path).stem}",
                }
            )

    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        folder = (
            run_dir(trainer) / self.folder
        )  # on every rank: trainer.log_dir is a collective call under DDP
        if not trainer.is_global_zero or not self._kept:
            return
        maps = np.stack([k["map"] for k in self._kept])
        vmin, vmax = float(np.percentile(maps, 1)), float(np.percentile(maps, 99.9))
        folder.mkdir(parents=True, exist_ok=True)
        panels, captions = [], []
        for kept in self._kept:
            panel = render_panel(kept["image"], kept["mask"], kept["map"], vmin, vmax)
            Image.fromarray(panel).save(folder / f"{kept['name']}.png")
            panels.append(panel)
            captions.append(f"{kept['name']} score={kept['score']:.4g}")
        for logger in trainer.loggers:
            if hasattr(logger, "log_image"):
                logger.log_image(key="test/anomaly_maps", images=panels, caption=captions)
