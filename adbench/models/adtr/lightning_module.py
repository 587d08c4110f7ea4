"""ADTR training and scoring (normal-only case)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from torch import Tensor

from adbench.data.batch import Batch
from adbench.models.adtr.feature_reconstruction import FeatureReconstructionModule
from adbench.models.adtr.loss import feature_reconstruction_loss
from adbench.models.components.feature_cache import FeatureCache
from adbench.models.components.feature_pyramid import FeatureResize


class ADTR(FeatureReconstructionModule):
    """ADTR, normal-only case: reconstruct frozen backbone features with a query-embedding transformer.

    Paper setup (256x256 images): EfficientNet-B4 stages 1-5 at 16x16 (720 channels), width 256, 4+4 layers,
    AdamW (lr 1e-4, weight decay 1e-4), batch 16, 500 epochs with lr x0.1 after 400.
    Anomaly map: L2 norm of the feature difference, upsampled to the image; image score: max of the
    average-pooled map.

    Args:
        backbone: timm model name of the frozen feature extractor.
        layers: backbone stages to concatenate (timm out_indices; 0..4 are stages 1-5).
        pretrained: load ImageNet weights for the backbone (needed for meaningful features).
        weights_path: local backbone weights file, for machines without hub access.
        feature_size: side of the feature grid the stages are resized to.
        hidden_dim: transformer width after the 1x1 channel reduction.
        num_encoder_layers: transformer encoder layers.
        num_decoder_layers: transformer decoder layers.
        heads: attention heads.
        mlp_dim: transformer MLP hidden size.
        dropout: transformer dropout.
        learned_queries: decoder queries are a learned embedding (False: ablation without query embedding).
        reconstruction: ``transformer`` (the paper's ADTR), or an ablation of Sec. 4.4: ``no_attention`` (the
            transformer's layers without attention) or ``cnn`` (3x3 convolutions instead of attention); see
            ``ADTRModel``.
        feature_resize: how backbone stages reach the feature grid: ``area`` (averaged over each cell, the
            default) or ``bilinear_corners`` (point sampling, checkpoints from before issue 21).
        lr: AdamW learning rate.
        weight_decay: AdamW weight decay.
        lr_milestones: epochs after which the learning rate is multiplied by ``lr_gamma``.
        lr_gamma: learning-rate factor at each milestone.
        score_pool_size: average-pooling window (pixels, stride 1) applied to the full-resolution map before
            taking its maximum as the image score.
        cache_features: compute each training image's frozen backbone features once per fit and reuse them
            (same result, much faster on CPU); ignored with a warning when the data has train augmentations.
    """

    model_name = "adtr"

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
        lr: float = 1e-4,
        weight_decay: float = 1e-4,
        lr_milestones: Sequence[int] = (400,),
        lr_gamma: float = 0.1,
        score_pool_size: int = 16,
        cache_features: bool = False,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.build_model(pretrained, weights_path)
        self.feature_cache = FeatureCache() if cache_features else None

    def on_fit_start(self) -> None:
        super().on_fit_start()
        self.drop_cache_if_augmented()

    def compute_loss(self, batch: Batch) -> dict[str, Tensor]:
        if self.training and self.feature_cache is not None:
            features = self.feature_cache.get(batch.path, batch.image, self.model.extract)
        else:
            features = self.model.extract(batch.image)
        return {"loss": feature_reconstruction_loss(features, self.model.reconstruct(features))}
