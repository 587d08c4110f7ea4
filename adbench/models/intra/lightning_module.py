"""InTra training (random windows, several optimizer steps per image batch) and GMS-based scoring."""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor
from torch.utils.data import DataLoader

from adbench.data.batch import Batch
from adbench.models.base import AnomalyModule, NonFiniteError
from adbench.models.intra.loss import inpainting_loss
from adbench.models.intra.torch_model import GMSAnomalyMap, InTraModel, patchify


class InTra(AnomalyModule):
    """Inpainting Transformer: inpaint every patch from its window, score the GMS difference.

    Paper setup (MVTec AD): K = 16, L = 7, D = 512, 13 MFSA blocks with 8 heads, image size 256, 320 or 512
    per category, 600 random windows per training image per epoch, rotation/flip augmentation, Adam, early
    stopping after 50 epochs without validation improvement on 10% of the training images (at most 20),
    loss L2 + 0.01 GMS + 0.01 SSIM. Images must be in [0, 1] (data mean 0, std 1): SSIM and GMS constants
    assume that range.

    Training design: each training step receives a batch of B (augmented) images and draws
    ``windows_per_image * B`` random windows from them (see ``window_sampling``), shuffled and split into optimizer steps of ``window_batch_size`` windows
    (manual optimization). One epoch thus shows every training image in ``windows_per_image`` windows, as
    in the paper, while images are read, decoded and augmented once per epoch and windows are cut from
    tensors already on the device by indexing. Trainer options of automatic optimization (gradient
    clipping, gradient accumulation) do not apply.

    Validation loss (for early stopping): the same loss over *every* patch of each validation image, each
    inpainted from its inference window (deterministic). At the end of ``fit`` the weights of the checkpoint
    with the best monitored validation loss are restored (``use_best_checkpoint``; paper: the best model is
    evaluated), the mean anomaly map of the normal training and validation images (without augmentation)
    is fitted into the ``scorer.mean_map`` buffer, and that checkpoint (or ``last.ckpt`` when nothing is
    monitored) is saved again so it holds the mean map. A model tested without a fitted mean map fits it at
    test start from the datamodule's normal training images.

    Anomaly map: ``(S(1 - MSGMS(I, I_hat)) - mean_map) ** 2`` with MSGMS the GMS maps at ``map_scales``
    (paper: 1/2 and 1/4) upsampled and averaged, S the mean filter then Gaussian filter; image score: its
    maximum. Inputs whose size is not a multiple of K are resized to the nearest multiple.

    Args:
        patch_size: K, patch side in pixels.
        window_size: L, window side in patches.
        embed_dim: D, token size.
        depth: number of transformer blocks.
        heads: attention heads.
        mlp_ratio: MLP hidden size / D.
        position_embedding: ``local`` (position inside the window; the paper's choice for textures) or
            ``global`` (position in the image grid; for objects).
        max_grid_size: largest grid side in patches for ``global`` embeddings (32 = 512 px images).
        long_skips: U-Net-like long residual connections between the first and second half of the blocks.
        feature_attention: multihead feature self-attention (False: standard multihead self-attention).
        windows_per_image: random windows per training image per epoch.
        window_batch_size: windows per optimizer step.
        window_sampling: ``uniform`` (window origin uniform, hidden patch uniform inside it: the paper's
            training as public re-implementations read it) or ``inference`` (hidden patch uniform over the
            grid, window placed as at inference: mostly centered, easier to learn on short schedules).
        lr: Adam learning rate.
        gms_weight: weight of the GMS loss (alpha).
        ssim_weight: weight of the SSIM loss (beta).
        gms_scales: scales of the multi-scale GMS loss (1 = full resolution).
        map_scales: scales of the GMS anomaly map; the paper (seed 004) uses only 1/2 and 1/4, whose
            maps are upsampled to the image size and averaged: the full-resolution GMS map is dominated by
            pixel-level inpainting noise.
        mean_filter_size: mean filter applied to the GMS distance map (odd, pixels; 1 disables).
        gaussian_sigma: Gaussian filter sigma applied after the mean filter (pixels; 0 disables).
        inference_chunk: windows per forward pass when inpainting whole images (256: one 256 px image;
            larger chunks only add memory traffic on a CPU).
        use_best_checkpoint: at the end of fit, reload the weights with the best monitored validation loss.
    """

    model_name = "intra"

    def __init__(
        self,
        patch_size: int = 16,
        window_size: int = 7,
        embed_dim: int = 512,
        depth: int = 13,
        heads: int = 8,
        mlp_ratio: float = 4.0,
        position_embedding: Literal["local", "global"] = "local",
        max_grid_size: int = 32,
        long_skips: bool = True,
        feature_attention: bool = True,
        windows_per_image: int = 600,
        window_batch_size: int = 256,
        window_sampling: Literal["uniform", "inference"] = "uniform",
        lr: float = 1e-4,
        gms_weight: float = 0.01,
        ssim_weight: float = 0.01,
        gms_scales: Sequence[float] = (1.0, 0.5, 0.25),
        map_scales: Sequence[float] = (0.5, 0.25),
        mean_filter_size: int = 21,
        gaussian_sigma: float = 4.0,
        inference_chunk: int = 256,
        use_best_checkpoint: bool = True,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.automatic_optimization = False
        if windows_per_image < 1 or window_batch_size < 1 or inference_chunk < 1:
            raise ValueError("windows_per_image, window_batch_size and inference_chunk must be positive")
        if window_sampling not in ("uniform", "inference"):
            raise ValueError(f"window_sampling must be 'uniform' or 'inference', got {window_sampling!r}")
        self.model = InTraModel(
            patch_size=patch_size,
            window_size=window_size,
            channels=3,
            embed_dim=embed_dim,
            depth=depth,
            heads=heads,
            mlp_ratio=mlp_ratio,
            position_embedding=position_embedding,
            max_grid_size=max_grid_size,
            long_skips=long_skips,
            feature_attention=feature_attention,
        )
        self.scorer = GMSAnomalyMap(map_scales, mean_filter_size, gaussian_sigma)
        self._val_cache: tuple[Tensor, Tensor, Tensor] | None = None

    @property
    def expected_normalization(self) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
        return (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)

    # ------------------------------------------------------------------------------------------------ helpers
    def fit_to_patches(self, image: Tensor) -> Tensor:
        """Resizes (B, 3, H, W) bilinearly to the nearest multiples of K (unchanged when they already are)."""
        if image.shape[1] != self.model.channels:
            raise ValueError(f"InTra expects {self.model.channels}-channel images, got {image.shape[1]}")
        k = self.hparams.patch_size
        height, width = image.shape[-2:]
        size = (max(k, round(height / k) * k), max(k, round(width / k) * k))
        if size == (height, width):
            return image
        return F.interpolate(image, size=size, mode="bilinear", align_corners=False)

    def _loss(self, prediction: Tensor, target: Tensor) -> dict[str, Tensor]:
        k, c = self.hparams.patch_size, self.model.channels
        return inpainting_loss(
            prediction.reshape(-1, c, k, k),
            target.reshape(-1, c, k, k),
            gms_weight=self.hparams.gms_weight,
            ssim_weight=self.hparams.ssim_weight,
            gms_scales=self.hparams.gms_scales,
        )

    def reconstruct(self, image: Tensor) -> Tensor:
        """Args: image (B, 3, H, W), H, W multiples of K. Returns: every patch inpainted (B, 3, H, W)."""
        return self.model.reconstruct(image, self.hparams.inference_chunk)

    # --------------------------------------------------------------------------------------------- training
    def compute_loss(self, batch: Batch) -> dict[str, Tensor]:
        """The loss of one random window per ``window_batch_size`` slot (no optimizer step)."""
        patches = patchify(self.fit_to_patches(batch.image), self.hparams.patch_size)
        b, n, m, _ = patches.shape
        image = torch.randint(0, b, (self.hparams.window_batch_size,), device=patches.device)
        top, left, row, col = self.model.sample_windows(
            len(image), n, m, patches.device, self.hparams.window_sampling
        )
        prediction = self.model.inpaint(self.model.embed(patches), image, top, left, row, col)
        return self._loss(prediction, patches[image, top + row, left + col])

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        optimizer = self.optimizers()
        patches = patchify(self.fit_to_patches(batch.image), self.hparams.patch_size)
        b, n, m, _ = patches.shape
        device = patches.device
        total = b * self.hparams.windows_per_image
        owners = torch.arange(total, device=device)[torch.randperm(total, device=device)] % b
        sums: dict[str, Tensor] = {}
        for image in owners.split(self.hparams.window_batch_size):
            top, left, row, col = self.model.sample_windows(
                len(image), n, m, device, self.hparams.window_sampling
            )
            prediction = self.model.inpaint(self.model.embed(patches), image, top, left, row, col)
            losses = self._loss(prediction, patches[image, top + row, left + col])
            if not torch.isfinite(losses["loss"]):
                raise NonFiniteError(
                    f"{self.model_name}: training loss is {losses['loss'].item()} at step {self.global_step} "
                    f"(epoch {self.current_epoch}); lower the learning rate or check the input images"
                )
            optimizer.zero_grad(set_to_none=True)
            self.manual_backward(losses["loss"])
            optimizer.step()
            for key, value in losses.items():
                sums[key] = sums.get(key, 0.0) + value.detach() * len(image)
        means = {f"train/{k}": v / total for k, v in sums.items()}
        self.log_dict(means, prog_bar=True, batch_size=b)
        return means["train/loss"]

    def configure_optimizers(self):
        return torch.optim.Adam(self.model.parameters(), lr=self.hparams.lr)

    # ------------------------------------------------------------------------------------------ validation
    def validation_step(self, batch: Batch, batch_idx: int) -> dict[str, Any]:
        image = self.fit_to_patches(batch.image)
        reconstruction = self.reconstruct(image)
        k = self.hparams.patch_size
        losses = self._loss(patchify(reconstruction, k), patchify(image, k))
        self.log_dict({f"val/{k}": v for k, v in losses.items()}, sync_dist=True, batch_size=batch.batch_size)
        self._val_cache = (batch.image, image, reconstruction)
        try:
            return self.predict_batch(batch)
        finally:
            self._val_cache = None

    # ------------------------------------------------------------------------------------------------ scoring
    def anomaly_map(self, image: Tensor) -> Tensor:
        if self._val_cache is not None and self._val_cache[0] is image:
            _, resized, reconstruction = self._val_cache
        else:
            resized = self.fit_to_patches(image)
            reconstruction = self.reconstruct(resized)
        return self.scorer(resized, reconstruction)

    @torch.no_grad()
    def fit_mean_map(self, batches: Iterable[Batch]) -> None:
        """Sets ``scorer.mean_map`` to the mean smoothed GMS distance map of normal images.

        Args:
            batches: batches of normal images (labels other than 0 are skipped), unaugmented.
        """
        was_training = self.training
        self.eval()
        total: Tensor | None = None
        count = 0
        for batch in batches:
            keep = batch.label == 0
            if not keep.any():
                continue
            image = self.fit_to_patches(batch.image[keep.cpu()].to(self.device))
            distance = self.scorer.difference(image, self.reconstruct(image)).sum(dim=0, keepdim=True)
            total = distance if total is None else total + distance
            count += image.shape[0]
        self.train(was_training)
        if total is None:
            raise ValueError("fit_mean_map got no normal images")
        self.scorer.set_mean_map(total / count)

    def _normal_batches(self) -> Iterable[Batch] | None:
        """Unaugmented normal train + validation images of the trainer's datamodule, or None."""
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is not None and all(hasattr(datamodule, a) for a in ("dataset", "image_size", "mean")):
            from adbench.data.dataset import AnomalyDataset
            from adbench.data.transforms import ImageMaskTransform

            samples = [
                s for split in ("train", "val") for s in datamodule.dataset(split).samples if s.label == 0
            ]
            transform = ImageMaskTransform(
                datamodule.image_size, datamodule.center_crop, datamodule.mean, datamodule.std
            )
            return DataLoader(
                AnomalyDataset(samples, transform),
                batch_size=datamodule.eval_batch_size,
                num_workers=datamodule.num_workers,
                collate_fn=Batch.collate,
            )
        if getattr(self.trainer, "train_dataloader", None) is not None:
            return self.trainer.train_dataloader
        return None

    def _restore_best_weights(self) -> str | None:
        for callback in self.trainer.checkpoint_callbacks:
            path = getattr(callback, "best_model_path", "")
            if getattr(callback, "monitor", None) and path and Path(path).is_file():
                checkpoint = torch.load(path, map_location=self.device, weights_only=True)
                self.load_state_dict(checkpoint["state_dict"])
                rank_zero_info(f"{self.model_name}: restored the best weights from {path}")
                return path
        return None

    def on_train_end(self) -> None:
        start = time.perf_counter()
        best = self._restore_best_weights() if self.hparams.use_best_checkpoint else None
        batches = self._normal_batches()
        if batches is None:
            warnings.warn(f"{self.model_name}: no training data to fit the mean anomaly map", stacklevel=2)
            return
        self.fit_mean_map(batches)
        self.train_seconds += time.perf_counter() - start
        paths = [best] if best else [c.last_model_path for c in self.trainer.checkpoint_callbacks]
        for path in dict.fromkeys(p for p in paths if p):
            self.trainer.save_checkpoint(path)

    def _ensure_mean_map(self) -> None:
        if self.scorer.fitted:
            return
        batches = self._normal_batches()
        if batches is None:
            warnings.warn(
                f"{self.model_name}: the mean training anomaly map is not fitted and no training data is "
                "available; maps are not mean-subtracted",
                stacklevel=2,
            )
            return
        rank_zero_info(f"{self.model_name}: fitting the mean training anomaly map")
        with torch.inference_mode(False):
            self.fit_mean_map(batches)

    def on_test_start(self) -> None:
        super().on_test_start()
        self._ensure_mean_map()

    def on_predict_start(self) -> None:
        self._ensure_mean_map()
