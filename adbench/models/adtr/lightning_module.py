"""ADTR training and scoring (normal-only case)."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from adbench.data.batch import Batch
from adbench.models.adtr.loss import feature_reconstruction_loss
from adbench.models.adtr.torch_model import ADTRModel
from adbench.models.base import AnomalyModule
from adbench.models.components.feature_cache import FeatureCache


class ADTR(AnomalyModule):
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
        lr: float = 1e-4,
        weight_decay: float = 1e-4,
        lr_milestones: Sequence[int] = (400,),
        lr_gamma: float = 0.1,
        score_pool_size: int = 16,
        cache_features: bool = False,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.model = ADTRModel(
            backbone=backbone,
            layers=layers,
            pretrained=pretrained,
            weights_path=weights_path,
            feature_size=feature_size,
            hidden_dim=hidden_dim,
            num_encoder_layers=num_encoder_layers,
            num_decoder_layers=num_decoder_layers,
            heads=heads,
            mlp_dim=mlp_dim,
            dropout=dropout,
            learned_queries=learned_queries,
        )

        self.feature_cache = FeatureCache() if cache_features else None

    def on_fit_start(self) -> None:
        super().on_fit_start()
        augmentations = getattr(getattr(self.trainer, "datamodule", None), "train_augmentations", None)
        if self.feature_cache is not None and augmentations:
            warnings.warn(
                "adtr: cache_features is ignored because the data has train augmentations", stacklevel=2
            )
            self.feature_cache = None

    @property
    def expected_normalization(self) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
        return self.model.backbone.mean_std if self.hparams.pretrained else None

    def compute_loss(self, batch: Batch) -> dict[str, Tensor]:
        if self.training and self.feature_cache is not None:
            features = self.feature_cache.get(batch.path, batch.image, self.model.extract)
        else:
            features = self.model.extract(batch.image)
        return {"loss": feature_reconstruction_loss(features, self.model.reconstruct(features))}

    def anomaly_map(self, image: Tensor) -> Tensor:
        return self.model(image).anomaly_map

    def image_score(self, anomaly_map: Tensor) -> Tensor:
        size = min(self.hparams.score_pool_size, *anomaly_map.shape[-2:])
        pooled = F.avg_pool2d(anomaly_map, kernel_size=size, stride=1)
        return pooled.flatten(1).amax(dim=1)

    def configure_optimizers(self):
        params = [p for p in self.model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
        scheduler = torch.optim.lr_scheduler.MultiStepLR(
            optimizer, milestones=list(self.hparams.lr_milestones), gamma=self.hparams.lr_gamma
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}
