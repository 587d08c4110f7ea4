"""ADTR+: ADTR fine-tuned with anomalies (synthetic confetti or labelled ones), paper Sec. 3.3.

Training objective (per image, averaged over the batch; ``d = f - f_hat`` on the h x w feature grid):

    phi(u) = sqrt(((1/C) sum_i |d(i, u)|)^2 + 1) - 1
    images with pixel labels y(u):   L_px  = (1/hw) sum_u (1 - y(u)) phi(u)
                                            - alpha log(1 - exp(-(1/hw) sum_u y(u) phi(u)))   (Eq. 7)
    images with image labels y only: L_img = (1 - y) q - alpha y log(1 - exp(-q)),
                                     q = mean of the top-k phi(u)                               (Eq. 9)

with alpha = 0.003. Normal images have y(u) = 0 everywhere, so their L_px is the pull term alone (the push
term would be -alpha log 0; FCDD's implementation likewise drops it for fully normal images).

Choices where the paper is silent (written down here):

* y(u) on the feature grid: the pixel mask is max-pooled to h x w (a cell is anomalous when any of its pixels
  is), so no pixel of a defect is ever pulled towards reconstruction as normal.
* Synthetic anomalies (``anomaly_source: confetti``): confetti noise (FCDD) on ``synthetic_fraction`` = 0.5
  of the normal images of every training batch, generated on the fly with a seeded generator. FCDD's online
  supervision replaces each training sample by an artificial anomaly with probability 0.5; a fixed half of
  every batch keeps both terms of Eq. 7 active in every step. Validation uses its own generator, re-seeded
  every validation epoch, so validation losses are comparable and do not shift the training stream.
* ``supervision: pixel`` (MVTec AD): Eq. 7 for every image with a mask and for normal images, Eq. 9 for
  anomalies that only have an image label. ``supervision: image`` (CIFAR-10): Eq. 9 for every image, masks
  ignored, as the paper does with CIFAR-100 auxiliary anomalies.
* Scoring is ADTR's: s(u) = ||d(:, u)||_2, image score = max of the average-pooled map.
* ``init_from``: the ``model.*`` weights of a normal-only ADTR checkpoint (frozen backbone included) are
  loaded at construction; the backbone then needs no ImageNet weights of its own. When ``init_from`` is
  null, fit warns that training starts from scratch.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from adbench.data.batch import Batch
from adbench.data.synthesis import ConfettiNoise
from adbench.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from adbench.errors import ConfigError
from adbench.models.adtr.feature_reconstruction import FeatureReconstructionModule
from adbench.models.adtr.loss import feature_reconstruction_loss
from adbench.models.adtr_plus.init_from import load_adtr_weights
from adbench.models.adtr_plus.loss import image_level_loss, pixel_level_loss, pseudo_huber_map
from adbench.models.components.feature_cache import FeatureCache
from adbench.models.components.feature_pyramid import FeatureResize
from adbench.models.components.synthetic_batch import BatchSynthesizer


class ADTRPlus(FeatureReconstructionModule):
    """ADTR+ (anomaly-available case): ADTR's transformer trained with L_px / L_img from an ADTR checkpoint.

    Paper setup (MVTec AD): load the normal-only ADTR, then 300 epochs of L_px (alpha 0.003) with confetti
    anomalies, AdamW (weight decay 1e-4), lr 1e-4 for 200 epochs and 1e-5 for the last 100, batch 16.

    Args:
        backbone: timm model name of the frozen feature extractor (must match ``init_from``).
        layers: backbone stages to concatenate (timm out_indices; 0..4 are stages 1-5).
        pretrained: load ImageNet weights for the backbone when ``init_from`` is null (with ``init_from`` the
            checkpoint's backbone weights are used).
        weights_path: local backbone weights file, for machines without hub access.
        feature_size: side of the feature grid the stages are resized to.
        hidden_dim: transformer width after the 1x1 channel reduction.
        num_encoder_layers: transformer encoder layers.
        num_decoder_layers: transformer decoder layers.
        heads: attention heads.
        mlp_dim: transformer MLP hidden size.
        dropout: transformer dropout.
        learned_queries: decoder queries are a learned embedding.
        reconstruction: ``transformer`` (the paper's ADTR), or an ablation of Sec. 4.4: ``no_attention`` (the
            transformer's layers without attention) or ``cnn`` (3x3 convolutions instead of attention); see
            ``ADTRModel``.
        feature_resize: how backbone stages reach the feature grid: ``area`` (averaged over each cell, the
            default) or ``bilinear_corners`` (point sampling, checkpoints from before issue 21).
        init_from: a normal-only ADTR checkpoint (``last.ckpt`` of ``adbench fit`` with an ADTR config) whose
            weights start the training; null trains from scratch (with a warning).
        anomaly_source: ``confetti``: synthesize confetti noise on a fraction of each batch's normal images
            (plus any labelled anomalies the data provides); ``data``: only the labelled anomalies of the
            training split (e.g. CIFAR-100 auxiliary images, or a folder of real defects).
        synthetic_fraction: fraction of each training batch's normal images turned into confetti anomalies.
        confetti: keyword arguments of ``adbench.data.synthesis.ConfettiNoise`` (null: its defaults).
        supervision: ``pixel``: Eq. 7 where masks exist (Eq. 9 for mask-less anomalies); ``image``: Eq. 9 for
            every image.
        alpha: weight of the push (anomaly) term in Eq. 7 and Eq. 9.
        top_k: positions averaged into the image score q of Eq. 9.
        lr: AdamW learning rate.
        weight_decay: AdamW weight decay.
        lr_milestones: epochs after which the learning rate is multiplied by ``lr_gamma``.
        lr_gamma: learning-rate factor at each milestone.
        score_pool_size: average-pooling window (pixels, stride 1) applied to the full-resolution map before
            taking its maximum as the image score.
        synthesis_seed: seed of the confetti generator's random stream.
        cache_features: reuse the frozen backbone features of training images that are not altered by
            confetti (same result, faster on CPU); ignored with a warning when the data has train augmentations.
    """

    model_name = "adtr_plus"

    def __init__(
        self,
        backbone: str = "efficientnet_b4",
        layers: Sequence[int] = (0, 1, 2, 3, 4),
        pretrained: bool = True,
        weights_path: str | None = None,
        feature_size: int = 16,
        hidden_dim: int = 256,
        num_encoder_layers: int = 4,
        num_decoder_layers: int = 4,
        heads: int = 8,
        mlp_dim: int = 1024,
        dropout: float = 0.1,
        learned_queries: bool = True,
        reconstruction: Literal["transformer", "no_attention", "cnn"] = "transformer",
        feature_resize: FeatureResize = "area",
        init_from: str | None = None,
        anomaly_source: Literal["confetti", "data"] = "confetti",
        synthetic_fraction: float = 0.5,
        confetti: dict[str, Any] | None = None,
        supervision: Literal["pixel", "image"] = "pixel",
        alpha: float = 0.003,
        top_k: int = 20,
        lr: float = 1e-4,
        weight_decay: float = 1e-4,
        lr_milestones: Sequence[int] = (200,),
        lr_gamma: float = 0.1,
        score_pool_size: int = 16,
        synthesis_seed: int = 0,
        cache_features: bool = False,
    ) -> None:
        super().__init__()
        if anomaly_source not in ("confetti", "data"):
            raise ConfigError(f"anomaly_source must be 'confetti' or 'data', got {anomaly_source!r}")
        if supervision not in ("pixel", "image"):
            raise ConfigError(f"supervision must be 'pixel' or 'image', got {supervision!r}")
        if not 0.0 <= synthetic_fraction <= 1.0:
            raise ConfigError(f"synthetic_fraction must be in [0, 1], got {synthetic_fraction}")
        if top_k < 1:
            raise ConfigError(f"top_k must be >= 1, got {top_k}")
        # init_from is a path on this machine: kept out of the hyper-parameters so that a saved ADTR+
        # checkpoint loads anywhere; it is recorded in the checkpoint's "adbench" entry instead.
        self.save_hyperparameters(ignore=["init_from"])
        self.init_from = init_from
        self.confetti = ConfettiNoise(**(confetti or {}))
        self.build_model(pretrained and init_from is None, weights_path if init_from is None else None)
        self._pretrained_features = pretrained
        if init_from is not None:
            saved = load_adtr_weights(self.model, init_from, self.hparams)
            self._pretrained_features = bool(saved.get("pretrained", pretrained))
        self.feature_cache = FeatureCache() if cache_features else None
        self._train_synth: BatchSynthesizer | None = None
        self._val_synth: BatchSynthesizer | None = None

    # --------------------------------------------------------------------------------------------- anomalies
    def _normalization(self) -> tuple[Sequence[float], Sequence[float]]:
        trainer = getattr(self, "_trainer", None)
        datamodule = getattr(trainer, "datamodule", None) if trainer is not None else None
        if datamodule is not None and hasattr(datamodule, "mean"):
            return datamodule.mean, datamodule.std
        return self.expected_normalization or (IMAGENET_MEAN, IMAGENET_STD)

    def _synthesizer(self, train: bool) -> BatchSynthesizer:
        """The seeded confetti applier of the training (or validation) stream, created on first use."""
        mean, std = self._normalization()
        if train:
            if self._train_synth is None:
                seed = self.hparams.synthesis_seed + 7919 * self.global_rank
                self._train_synth = BatchSynthesizer(self.confetti, mean, std, seed=seed)
            return self._train_synth
        if self._val_synth is None:
            self._val_synth = BatchSynthesizer(self.confetti, mean, std, seed=self.hparams.synthesis_seed + 1)
        return self._val_synth

    def add_confetti(self, batch: Batch, train: bool = True) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Turns ``synthetic_fraction`` of the batch's normal images into confetti anomalies.

        The first normal images of the batch are altered (training batches are shuffled, so they are a random
        subset); their count is ``round_half_up(synthetic_fraction * n_normal)``.

        Args:
            batch: images (B, 3, H, W) normalized, labels (B,), masks (B, 1, H, W).
            train: draw from the training stream (else the validation stream).

        Returns:
            images (B, 3, H, W), labels (B,), masks (B, 1, H, W) with the altered images labelled 1, and which
            images were altered (B,) bool.
        """
        image, label, mask = batch.image, batch.label, batch.mask
        altered_flags = torch.zeros_like(label, dtype=torch.bool)
        normal = (label == 0).nonzero().flatten()
        count = min(int(self.hparams.synthetic_fraction * normal.numel() + 0.5), normal.numel())
        if count == 0:
            return image, label, mask, altered_flags
        chosen = normal[:count]
        altered, new_masks = self._synthesizer(train)(image[chosen])
        image, label, mask = image.clone(), label.clone(), mask.clone()
        image[chosen] = altered
        mask[chosen] = new_masks.to(mask.dtype)
        label[chosen] = 1
        altered_flags[chosen] = True
        return image, label, mask, altered_flags

    # ---------------------------------------------------------------------------------------------- training
    def losses(
        self, image: Tensor, label: Tensor, mask: Tensor, features: Tensor | None = None
    ) -> dict[str, Tensor]:
        """ADTR+ loss of a labelled batch.

        Args:
            image: (B, 3, H, W) normalized.
            label: (B,) image labels.
            mask: (B, 1, H, W) pixel labels; an anomalous image with an all-zero mask has an image label only.
            features: the images' backbone features (B, C, h, w) when already known (feature cache).

        Returns:
            ``loss`` (optimized), ``l_norm`` (ADTR's MSE, for monitoring) and ``anomalous`` (fraction of
            anomalous images in the batch).
        """
        features = self.model.extract(image) if features is None else features
        reconstruction = self.model.reconstruct(features)
        phi = pseudo_huber_map(features, reconstruction)  # (B, h, w)
        grid = F.adaptive_max_pool2d(mask.to(phi.dtype), phi.shape[-2:]).squeeze(1)  # y(u), (B, h, w)
        if self.hparams.supervision == "image":
            image_level = torch.ones_like(label, dtype=torch.bool)
        else:
            image_level = (label == 1) & (mask.flatten(1).amax(dim=1) <= 0)
        per_image = torch.where(
            image_level,
            image_level_loss(phi, label, self.hparams.alpha, self.hparams.top_k),
            pixel_level_loss(phi, grid, self.hparams.alpha),
        )
        return {
            "loss": per_image.mean(),
            "l_norm": feature_reconstruction_loss(features, reconstruction).detach(),
            "anomalous": (label == 1).float().mean(),
        }

    def compute_loss(self, batch: Batch) -> dict[str, Tensor]:
        if self.hparams.anomaly_source == "confetti":
            image, label, mask, altered = self.add_confetti(batch, train=self.training)
        else:
            image, label, mask = batch.image, batch.label, batch.mask
            altered = torch.zeros_like(label, dtype=torch.bool)
        features = None
        if self.training and self.feature_cache is not None:
            features = self._cached_features(image, batch.path, altered)
        return self.losses(image, label, mask, features)

    def _cached_features(self, image: Tensor, paths: Sequence[str], altered: Tensor) -> Tensor:
        """Backbone features (B, C, h, w): cached for unaltered images, extracted for confetti ones."""
        keep = (~altered).nonzero().flatten().tolist()
        fresh = altered.nonzero().flatten().tolist()
        parts: dict[int, Tensor] = {}
        if keep:
            cached = self.feature_cache.get([paths[i] for i in keep], image[keep], self.model.extract)
            parts.update(zip(keep, cached, strict=True))
        if fresh:
            parts.update(zip(fresh, self.model.extract(image[fresh]), strict=True))
        return torch.stack([parts[i] for i in range(image.shape[0])])

    def on_validation_epoch_start(self) -> None:
        self._val_synth = None  # the same validation anomalies every epoch

    def on_fit_start(self) -> None:
        super().on_fit_start()
        self.drop_cache_if_augmented()
        if self.init_from is None and getattr(self.trainer, "ckpt_path", None) is None:
            warnings.warn(
                "ADTR+: init_from is null, so training starts from scratch instead of from a normal-only "
                "ADTR checkpoint (the paper's setup); pass --model.init_args.init_from <ADTR last.ckpt>",
                stacklevel=2,
            )
        if self.hparams.anomaly_source == "data":
            self._check_training_anomalies()

    def _check_training_anomalies(self) -> None:
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is None or not hasattr(datamodule, "dataset"):
            return
        dataset = datamodule.dataset("train")
        labels = getattr(dataset, "labels", None)
        if labels is None and hasattr(dataset, "samples"):
            labels = [s.label for s in dataset.samples]
        if labels is not None and not any(int(v) == 1 for v in labels):
            raise ConfigError(
                f"ADTR+ anomaly_source 'data' but the training split of {type(datamodule).__name__} holds no "
                "anomalies: enable the data's anomalies (e.g. auxiliary_anomalies: true, or an anomaly_dir) "
                "or use anomaly_source: confetti"
            )

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["adbench"]["init_from"] = self.init_from
