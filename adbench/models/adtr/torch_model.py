"""ADTR: transformer reconstruction of frozen pretrained features (You et al., "ADTR", 2022).

Features of backbone stages 1-5 are resized to one grid (16x16 for 256x256 inputs) and concatenated
(720 channels for EfficientNet-B4), projected to ``hidden_dim`` tokens, encoded by a transformer encoder and
reconstructed by a transformer decoder whose queries are a learned embedding (one query per grid cell).
The learned queries keep the model from learning an identity shortcut (paper Sec. 3.2).
``reconstruction`` selects the ablations of Sec. 4.4 (the transformer without attention, a CNN); see
``adbench.models.adtr.ablation_layers``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from adbench.errors import ConfigError
from adbench.models.adtr.ablation_layers import ConvLayer, MLPLayer
from adbench.models.components.backbone import FeatureExtractor
from adbench.models.components.feature_pyramid import FEATURE_RESIZES, FeatureResize, resize_and_concat
from adbench.models.components.position import sine_position_embedding


class EncoderLayer(nn.Module):
    """Post-norm self-attention + MLP; position added to queries and keys only.

    Args:
        dim: token size.
        heads: attention heads.
        mlp_dim: hidden size of the MLP.
        dropout: dropout rate.
    """

    def __init__(self, dim: int, heads: int, mlp_dim: int, dropout: float) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.mlp = nn.Sequential(
            nn.Linear(dim, mlp_dim), nn.ReLU(), nn.Dropout(dropout), nn.Linear(mlp_dim, dim)
        )
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.drop1, self.drop2 = nn.Dropout(dropout), nn.Dropout(dropout)

    def forward(self, x: Tensor, pos: Tensor) -> Tensor:
        """Args: x (B, N, D), pos (N, D). Returns: (B, N, D)."""
        q = k = x + pos
        x = self.norm1(x + self.drop1(self.attn(q, k, x, need_weights=False)[0]))
        return self.norm2(x + self.drop2(self.mlp(x)))


class DecoderLayer(nn.Module):
    """Post-norm self-attention over queries, cross-attention to the encoder memory, MLP.

    Args:
        dim: token size.
        heads: attention heads.
        mlp_dim: hidden size of the MLP.
        dropout: dropout rate.
    """

    def __init__(self, dim: int, heads: int, mlp_dim: int, dropout: float) -> None:
        super().__init__()
        self.self_attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.cross_attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.mlp = nn.Sequential(
            nn.Linear(dim, mlp_dim), nn.ReLU(), nn.Dropout(dropout), nn.Linear(mlp_dim, dim)
        )
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.drop1, self.drop2, self.drop3 = nn.Dropout(dropout), nn.Dropout(dropout), nn.Dropout(dropout)

    def forward(self, tgt: Tensor, memory: Tensor, pos: Tensor) -> Tensor:
        """Args: tgt (B, N, D) queries, memory (B, N, D), pos (N, D). Returns: (B, N, D)."""
        q = k = tgt + pos
        tgt = self.norm1(tgt + self.drop1(self.self_attn(q, k, tgt, need_weights=False)[0]))
        attended = self.cross_attn(tgt + pos, memory + pos, memory, need_weights=False)[0]
        tgt = self.norm2(tgt + self.drop2(attended))
        return self.norm3(tgt + self.drop3(self.mlp(tgt)))


@dataclass
class ADTROutput:
    """Features and their reconstruction on the feature grid.

    Attributes:
        features: (B, C, h, w) backbone features (the target).
        reconstruction: (B, C, h, w).
    """

    features: Tensor
    reconstruction: Tensor

    @property
    def anomaly_map(self) -> Tensor:
        """s(u) = ||f(:, u) - f_hat(:, u)||_2, shape (B, 1, h, w) (paper Eq. 3)."""
        return (self.features - self.reconstruction).pow(2).sum(dim=1, keepdim=True).sqrt()


class ADTRModel(nn.Module):
    """Frozen backbone + transformer feature reconstruction.

    Args:
        backbone: timm model name (EfficientNet-B4 in the paper).
        layers: backbone stages whose features are concatenated (stages 1-5 -> 0..4).
        pretrained: load ImageNet weights for the backbone.
        weights_path: local backbone weights file (offline use).
        feature_size: side of the common feature grid (16 for 256x256 inputs).
        hidden_dim: transformer width (channels after the 1x1 reduction).
        num_encoder_layers: encoder depth.
        num_decoder_layers: decoder depth.
        heads: attention heads.
        mlp_dim: MLP hidden size.
        dropout: dropout rate.
        learned_queries: decoder queries are a learned embedding (ADTR); False feeds the encoder output as
            queries (the "without query embedding" ablation). Only used by ``reconstruction: transformer``.
        reconstruction: the reconstruction net between the 1x1 input and output projections (paper Sec. 4.4
            ablation). ``transformer``: ADTR's encoder-decoder (the paper's model). ``no_attention``: the same
            layers with their attention removed (post-norm residual MLPs on each feature vector alone, no
            query embedding). ``cnn``: a CNN of the same depth (encoder + decoder layers), width and block
            layout whose token mixing is a 3x3 convolution instead of attention. Both ablations keep the
            ``encoder`` / ``decoder`` module lists (their layers run one after the other).
        feature_resize: how the stages reach the common grid: ``area`` (finer stages averaged over each grid
            cell, coarser ones upsampled bilinearly, registered with the map's upsampling) or
            ``bilinear_corners`` (point sampling with ``align_corners=True``, checkpoints from before it).
    """

    RECONSTRUCTIONS = ("transformer", "no_attention", "cnn")

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
    ) -> None:
        super().__init__()
        if feature_resize not in FEATURE_RESIZES:
            raise ConfigError(
                f"feature_resize must be one of {', '.join(FEATURE_RESIZES)}, got {feature_resize!r}"
            )
        self.feature_resize = feature_resize
        if reconstruction not in self.RECONSTRUCTIONS:
            raise ConfigError(
                f"reconstruction must be one of {', '.join(self.RECONSTRUCTIONS)}, got {reconstruction!r}"
            )
        self.reconstruction = reconstruction
        self.backbone = FeatureExtractor(backbone, layers, pretrained=pretrained, weights_path=weights_path)
        self.feature_size = feature_size
        channels = sum(self.backbone.channels)
        tokens = feature_size * feature_size
        self.input_proj = nn.Linear(channels, hidden_dim)
        self.output_proj = nn.Linear(hidden_dim, channels)
        self.register_buffer(
            "pos_embed", sine_position_embedding(feature_size, feature_size, hidden_dim), persistent=False
        )
        if reconstruction == "transformer":
            encoder = [EncoderLayer(hidden_dim, heads, mlp_dim, dropout) for _ in range(num_encoder_layers)]
            decoder = [DecoderLayer(hidden_dim, heads, mlp_dim, dropout) for _ in range(num_decoder_layers)]
        else:
            layer = MLPLayer if reconstruction == "no_attention" else ConvLayer
            encoder = [layer(hidden_dim, mlp_dim, dropout) for _ in range(num_encoder_layers)]
            decoder = [layer(hidden_dim, mlp_dim, dropout) for _ in range(num_decoder_layers)]
        self.encoder, self.decoder = nn.ModuleList(encoder), nn.ModuleList(decoder)
        use_queries = learned_queries and reconstruction == "transformer"
        self.query_embed = nn.Parameter(torch.empty(tokens, hidden_dim)) if use_queries else None
        if self.query_embed is not None:
            nn.init.normal_(self.query_embed, std=0.02)
        for module in [self.input_proj, self.output_proj, *self.encoder, *self.decoder]:
            for p in module.parameters():
                if p.dim() > 1:
                    nn.init.xavier_uniform_(p)

    @property
    def feature_channels(self) -> int:
        return self.input_proj.in_features

    def extract(self, image: Tensor) -> Tensor:
        """Args: image (B, 3, H, W). Returns: concatenated features (B, C, feature_size, feature_size)."""
        return resize_and_concat(self.backbone(image), self.feature_size, self.feature_resize)

    def reconstruct(self, features: Tensor) -> Tensor:
        """Args: features (B, C, h, w). Returns: their reconstruction (B, C, h, w)."""
        batch, channels, height, width = features.shape
        tokens = self.input_proj(features.flatten(2).transpose(1, 2))  # (B, h*w, D)
        if self.reconstruction != "transformer":
            for layer in [*self.encoder, *self.decoder]:
                tokens = layer(tokens, height, width)
            return self.output_proj(tokens).transpose(1, 2).reshape(batch, channels, height, width)
        pos = self.pos_embed
        memory = tokens
        for layer in self.encoder:
            memory = layer(memory, pos)
        tgt = self.query_embed.expand(batch, -1, -1) if self.query_embed is not None else memory
        for layer in self.decoder:
            tgt = layer(tgt, memory, pos)
        return self.output_proj(tgt).transpose(1, 2).reshape(batch, channels, height, width)

    def forward(self, image: Tensor) -> ADTROutput:
        """Args: image (B, 3, H, W). Returns: features and reconstruction on the feature grid."""
        features = self.extract(image)
        return ADTROutput(features, self.reconstruct(features))
