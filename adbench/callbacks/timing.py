"""Training time, inference time per image and peak memory of a run."""

from __future__ import annotations

import resource
import sys
import time
from typing import Any

import torch
from lightning import Callback, LightningModule, Trainer


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_memory_mb(device: torch.device) -> float:
    """Peak accelerator memory allocated on ``device`` (CUDA), else the process's peak resident memory."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


class Timing(Callback):
    """Measures ``train_s`` (wall seconds of fitting, summed over resumed runs and kept in checkpoints),
    ``infer_ms_per_image`` (test forward + map upsampling, first batch excluded as warm-up when there are
    more) and ``peak_mem_MB``.
    """

    def __init__(self) -> None:
        self._fit_start = 0.0
        self._fit_base = 0.0
        self._batch_start = 0.0
        self._batch_times: list[tuple[float, int]] = []

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._fit_base = float(getattr(pl_module, "train_seconds", 0.0))
        self._fit_start = time.perf_counter()

    def _update_train_seconds(self, pl_module: LightningModule) -> None:
        pl_module.train_seconds = self._fit_base + time.perf_counter() - self._fit_start

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._update_train_seconds(pl_module)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._update_train_seconds(pl_module)

    def on_test_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._batch_times = []
        if pl_module.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(pl_module.device)

    def on_test_batch_start(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        _sync(pl_module.device)
        self._batch_start = time.perf_counter()

    def on_test_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        _sync(pl_module.device)
        self._batch_times.append((time.perf_counter() - self._batch_start, int(batch.image.shape[0])))

    def summary(self, pl_module: LightningModule) -> dict[str, float]:
        """``train_s``, ``infer_ms_per_image`` and ``peak_mem_MB`` measured so far."""
        times = self._batch_times[1:] if len(self._batch_times) > 1 else self._batch_times
        images = sum(n for _, n in times)
        return {
            "train_s": round(float(getattr(pl_module, "train_seconds", 0.0)), 3),
            "infer_ms_per_image": round(1000 * sum(t for t, _ in times) / images, 3)
            if images
            else float("nan"),
            "peak_mem_MB": round(peak_memory_mb(pl_module.device), 1),
        }
