"""What ADTR and ADTR+ share: the model's construction, scoring, optimizer and the feature-cache guard."""

from __future__ import annotations

import warnings
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from adbench.models.adtr.torch_model import ADTRModel
from adbench.models.base import AnomalyModule
from adbench.models.components.feature_pyramid import LEGACY_FEATURE_RESIZE

# ADTRModel's constructor arguments, as named in both modules' hyper-parameters.
MODEL_ARGS = (
    "backbone", "layers", "feature_size", "hidden_dim", "num_encoder_layers", "num_decoder_layers", "heads",
    "mlp_dim", "dropout", "learned_queries", "reconstruction", "feature_resize",
)  # fmt: skip


class FeatureReconstructionModule(AnomalyModule):
    """Base of ADTR and ADTR+: a frozen backbone's features reconstructed by ADTR's transformer.

    Subclasses call :meth:`build_model` after ``save_hyperparameters`` (which must hold ``MODEL_ARGS``,
    ``lr``, ``weight_decay``, ``lr_milestones``, ``lr_gamma`` and ``score_pool_size``) and set
    ``feature_cache`` (a FeatureCache or None).

    Scoring (paper Eq. 3 and Sec. 4.1): s(u) = ||f(:, u) - f_hat(:, u)||_2 upsampled to the image; image
    score = max of the map average-pooled with a ``score_pool_size`` window (stride 1).
    """

    _pretrained_features = True

    def build_model(self, pretrained: bool, weights_path: str | None) -> ADTRModel:
        """Creates ``self.model`` from the hyper-parameters; ``pretrained`` decides the expected normalization."""
        self._pretrained_features = pretrained
        self.model = ADTRModel(
            pretrained=pretrained,
            weights_path=weights_path,
            **{name: self.hparams[name] for name in MODEL_ARGS},
        )
        return self.model

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        saved = checkpoint.get("hyper_parameters", {})
        if "feature_resize" not in saved and self.model.feature_resize != LEGACY_FEATURE_RESIZE:
            warnings.warn(
                f"{self.model_name}: this checkpoint predates feature_resize; its features are resized as it was "
                f"trained ({LEGACY_FEATURE_RESIZE}), not with {self.model.feature_resize!r}",
                stacklevel=2,
            )
            self.model.feature_resize = LEGACY_FEATURE_RESIZE
            self.hparams.feature_resize = LEGACY_FEATURE_RESIZE

    def drop_cache_if_augmented(self) -> None:
        """Turns the feature cache off (with a warning) when the training data has random augmentations."""
        augmentations = getattr(getattr(self.trainer, "datamodule", None), "train_augmentations", None)
        if getattr(self, "feature_cache", None) is not None and augmentations:
            warnings.warn(
                f"{self.model_name}: cache_features is ignored because the data has train augmentations",
                stacklevel=2,
            )
            self.feature_cache = None

    @property
    def expected_normalization(self) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
        return self.model.backbone.mean_std if self._pretrained_features else None

    def anomaly_map(self, image: Tensor) -> Tensor:
        return self.model(image).anomaly_map

    def image_score(self, anomaly_map: Tensor) -> Tensor:
        size = min(self.hparams.score_pool_size, *anomaly_map.shape[-2:])
        pooled = F.avg_pool2d(anomaly_map, kernel_size=size, stride=1)
        return pooled.flatten(1).amax(dim=1)

    def configure_optimizers(self) -> dict[str, Any]:
        """AdamW on the trainable parameters, learning rate x ``lr_gamma`` at each epoch milestone."""
        params = [p for p in self.model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
        scheduler = torch.optim.lr_scheduler.MultiStepLR(
            optimizer, milestones=list(self.hparams.lr_milestones), gamma=self.hparams.lr_gamma
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}
