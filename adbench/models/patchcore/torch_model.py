"""PatchCore: a memory bank of locally aware pretrained patch features (Roth et al., "Towards Total Recall
in Industrial Anomaly Detection", CVPR 2022).

Patch features: the chosen backbone stages, each averaged over its 3x3 neighbourhood (stride 1), brought to
the finest chosen stage's grid and concatenated; optionally averaged down to ``embedding_dim`` channels.
Anomaly map: each test patch's distance to its nearest memory-bank patch, upsampled to the image and
smoothed by a Gaussian (sigma 4). Image score: the largest patch distance, reweighted by how isolated its
nearest bank patch is (paper Eq. 7).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from adbench.errors import ConfigError
from adbench.models.components.backbone import FeatureExtractor
from adbench.models.components.coreset import greedy_coreset
from adbench.models.components.feature_pyramid import resize_and_concat
from adbench.models.components.gaussian_blur import GaussianBlur2d
from adbench.models.components.nearest_neighbors import nearest_neighbors


@dataclass
class PatchCoreOutput:
    """A PatchCore prediction.

    Attributes:
        anomaly_map: (B, 1, H, W) at the input resolution, smoothed.
        pred_score: (B,) image scores.
        patch_scores: (B, 1, h, w) nearest-neighbour distances on the feature grid.
    """

    anomaly_map: Tensor
    pred_score: Tensor
    patch_scores: Tensor


def reweighted_image_score(
    patch_scores: Tensor, locations: Tensor, embedding: Tensor, memory_bank: Tensor, num_neighbors: int
) -> Tensor:
    """Paper Eq. 7: the largest patch score s*, scaled by ``1 - softmax(distances to N_b(m*))[0]``.

    ``m*`` is the bank patch nearest to the most anomalous test patch; ``N_b(m*)`` are ``m*``'s
    ``num_neighbors`` nearest bank patches (``m*`` itself first). A test patch whose nearest bank patch sits
    in a sparse region of the bank gets a larger score than one next to a dense cluster.

    Args:
        patch_scores: (B, P) nearest-neighbour distances.
        locations: (B, P) indices of the nearest bank patches.
        embedding: (B, P, D) test patch features.
        memory_bank: (M, D).
        num_neighbors: size of ``N_b``; 1 returns the plain maximum.

    Returns:
        (B,) image scores.
    """
    if num_neighbors <= 1:
        return patch_scores.amax(dim=1)
    rows = torch.arange(patch_scores.shape[0], device=patch_scores.device)
    worst = patch_scores.argmax(dim=1)
    score = patch_scores[rows, worst]
    worst_features = embedding[rows, worst]  # (B, D)
    nearest_bank = memory_bank[locations[rows, worst]]  # (B, D)
    _, support = nearest_neighbors(nearest_bank, memory_bank, k=min(num_neighbors, memory_bank.shape[0]))
    distances = (worst_features.unsqueeze(1) - memory_bank[support]).pow(2).sum(-1).sqrt()  # (B, k)
    weights = 1.0 - torch.softmax(distances, dim=1)[:, 0]
    return weights * score


def _average_channels(features: Tensor, channels: int) -> Tensor:
    """Adaptive average pooling along channels. Args: features (B, C, h, w). Returns: (B, channels, h, w)."""
    b, c, h, w = features.shape
    if channels == c:
        return features
    flat = features.permute(0, 2, 3, 1).reshape(-1, 1, c)
    return F.adaptive_avg_pool1d(flat, channels).reshape(b, h, w, channels).permute(0, 3, 1, 2)


class PatchCoreModel(nn.Module):
    """Frozen backbone + memory bank; a complete predictor once the bank is filled.

    Args:
        backbone: timm model name (paper: ``wide_resnet50_2``).
        layers: backbone stages whose features are combined (timm out_indices; the paper's ResNet layer2 and
            layer3 are 2 and 3).
        pretrained: load ImageNet weights.
        weights_path: local backbone weights file, for machines without hub access.
        embedding_dim: fixed patch-feature dimension: each stage's channels are averaged down to an equal
            share of it (the official code's two adaptive-average steps); None concatenates all channels
            (anomalib).
        num_neighbors: size of the neighbourhood of the image-score reweighting (1: plain max).
        sigma: Gaussian smoothing of the full-resolution map, in pixels (0: none).
    """

    def __init__(
        self,
        backbone: str = "wide_resnet50_2",
        layers: Sequence[int] = (2, 3),
        pretrained: bool = True,
        weights_path: str | None = None,
        embedding_dim: int | None = None,
        num_neighbors: int = 9,
        sigma: float = 4.0,
    ) -> None:
        super().__init__()
        if not layers:
            raise ConfigError("PatchCore: layers must name at least one backbone stage, e.g. [2, 3]")
        if embedding_dim is not None and embedding_dim < 1:
            raise ConfigError(
                f"PatchCore: embedding_dim must be a positive integer or null, got {embedding_dim}"
            )
        if num_neighbors < 1:
            raise ConfigError(f"PatchCore: num_neighbors must be >= 1, got {num_neighbors}")
        if sigma < 0:
            raise ConfigError(f"PatchCore: sigma must be >= 0, got {sigma}")
        self.backbone = FeatureExtractor(backbone, layers, pretrained=pretrained, weights_path=weights_path)
        self.feature_channels = sum(self.backbone.channels)
        self.embedding_dim = embedding_dim or self.feature_channels
        # Each stage gets an equal share of a fixed dimension, as the official code's two averaging steps.
        share, extra = divmod(self.embedding_dim, len(self.backbone.channels))
        self._stage_dims = [share + (i < extra) for i in range(len(self.backbone.channels))]
        if embedding_dim is not None and min(self._stage_dims) < 1:
            raise ConfigError(
                f"PatchCore: embedding_dim {embedding_dim} is smaller than the number of layers"
            )
        self.num_neighbors = num_neighbors
        self.local_average = nn.AvgPool2d(kernel_size=3, stride=1, padding=1)
        self.blur = GaussianBlur2d(sigma)
        self.register_buffer("memory_bank", torch.zeros(0, self.embedding_dim))

    @property
    def is_fitted(self) -> bool:
        return self.memory_bank.shape[0] > 0

    def embed(self, image: Tensor) -> Tensor:
        """Locally aware patch features.

        Args:
            image: (B, 3, H, W) normalized for the backbone.

        Returns:
            (B, h, w, D) on the finest chosen stage's grid.
        """
        features = [self.local_average(f) for f in self.backbone(image)]
        if self.embedding_dim != self.feature_channels:
            features = [_average_channels(f, n) for f, n in zip(features, self._stage_dims, strict=True)]
        return resize_and_concat(features, features[0].shape[-2:]).permute(0, 2, 3, 1)

    def fit_memory_bank(
        self, patches: Tensor, coreset_ratio: float, projection_dim: int | None = 128, seed: int = 0
    ) -> None:
        """Fills the bank with a greedy k-center coreset of the training patches.

        Args:
            patches: (N, D) patch features of every training image, in a fixed order (the coreset's first
                pick is drawn by position, so the same order gives the same bank).
            coreset_ratio: fraction of the patches kept (at least one; 1.0 keeps all of them).
            projection_dim: random-projection dimension of the coreset distances (None: full space).
            seed: seed of the projection and of the first pick.
        """
        count = max(1, int(patches.shape[0] * coreset_ratio))
        if count < patches.shape[0]:
            picked = greedy_coreset(
                patches.to(self.memory_bank.device), count, projection_dim=projection_dim, seed=seed
            )
            patches = patches[picked.to(patches.device)]
        self.set_memory_bank(patches)

    def set_memory_bank(self, bank: Tensor) -> None:
        """Args: bank (M, D) patch features (a coreset of the training patches)."""
        if bank.ndim != 2 or bank.shape[1] != self.embedding_dim:
            raise ConfigError(
                f"PatchCore: a memory bank of shape {tuple(bank.shape)} does not fit embedding_dim "
                f"{self.embedding_dim}"
            )
        self.memory_bank = bank.detach().to(self.memory_bank.device, self.memory_bank.dtype).contiguous()

    def forward(self, image: Tensor) -> PatchCoreOutput:
        """Args: image (B, 3, H, W). Returns: the prediction (needs a filled memory bank)."""
        if not self.is_fitted:
            raise ConfigError(
                "PatchCore: the memory bank is empty; fit the model (adbench fit) or load a fitted checkpoint"
            )
        embedding = self.embed(image)
        b, h, w, d = embedding.shape
        flat = embedding.reshape(b, h * w, d)
        distances, locations = nearest_neighbors(flat.reshape(-1, d), self.memory_bank, k=1)
        patch_scores = distances.reshape(b, h * w)
        locations = locations.reshape(b, h * w)
        score = reweighted_image_score(patch_scores, locations, flat, self.memory_bank, self.num_neighbors)
        grid = patch_scores.reshape(b, 1, h, w)
        anomaly_map = F.interpolate(grid, size=image.shape[-2:], mode="bilinear", align_corners=False)
        return PatchCoreOutput(self.blur(anomaly_map), score, grid)

    def _load_from_state_dict(
        self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any
    ) -> None:
        # The bank's size is only known after fitting: take the checkpoint's shape before copying.
        bank = state_dict.get(prefix + "memory_bank")
        if isinstance(bank, Tensor) and bank.ndim == 2 and bank.shape[1] == self.embedding_dim:
            self.memory_bank = torch.empty_like(bank, device=self.memory_bank.device)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
