"""Separable Gaussian smoothing of anomaly maps."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class GaussianBlur2d(nn.Module):
    """Smooths (B, C, H, W) maps with a Gaussian of standard deviation ``sigma`` pixels.

    The kernel is ``2 * int(4 * sigma + 0.5) + 1`` pixels wide (33 for PatchCore's sigma 4, as anomalib and
    the official PatchCore code) and borders are reflected, so the map keeps its size and mean level.
    Images smaller than the kernel fall back to replicated borders (reflection needs more pixels than that).

    Args:
        sigma: standard deviation in pixels; 0 disables smoothing.
    """

    def __init__(self, sigma: float = 4.0) -> None:
        super().__init__()
        self.sigma = float(sigma)
        radius = int(4.0 * self.sigma + 0.5)
        offsets = torch.arange(-radius, radius + 1, dtype=torch.float32)
        kernel = torch.exp(-(offsets**2) / (2 * max(self.sigma, 1e-12) ** 2))
        self.register_buffer("kernel", kernel / kernel.sum(), persistent=False)
        self.radius = radius

    def forward(self, maps: Tensor) -> Tensor:
        """Args: maps (B, C, H, W). Returns: smoothed maps (B, C, H, W)."""
        if self.sigma <= 0 or self.radius == 0:
            return maps
        b, c, h, w = maps.shape
        r = self.radius
        mode = "reflect" if min(h, w) > r else "replicate"
        x = F.pad(maps.reshape(b * c, 1, h, w), (r, r, r, r), mode=mode)
        kernel = self.kernel.to(maps.dtype)
        x = F.conv2d(x, kernel.view(1, 1, 1, -1))
        x = F.conv2d(x, kernel.view(1, 1, -1, 1))
        return x.reshape(b, c, h, w)
