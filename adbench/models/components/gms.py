"""Gradient magnitude similarity (GMS, Xue et al. 2014) and its multi-scale distance map.

Gradients are Prewitt filters divided by 3 (``[[1, 0, -1]] * 3 / 3`` and its transpose) with replicate
padding, so the maps keep the image size and image borders add no artificial edges. For images in [0, 1]
the stability constant is ``c = 0.0026`` (170 / 255^2, the GMSD paper's value for 8-bit images, as RIAD
and InTra use it). Downscaling averages pixel blocks (``area``), the exact bilinear halving at 1/2.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

GMS_C = 0.0026


def gradient_magnitude(x: Tensor) -> Tensor:
    """Prewitt gradient magnitude of every channel.

    Args: x (B, C, H, W). Returns: (B, C, H, W), ``sqrt(gx^2 + gy^2)``.
    """
    channels = x.shape[1]
    prewitt = torch.tensor([[1.0, 0.0, -1.0]] * 3, device=x.device, dtype=x.dtype) / 3
    weight = torch.stack([prewitt, prewitt.t()]).unsqueeze(1).repeat(channels, 1, 1, 1)  # (2C, 1, 3, 3)
    grad = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), weight, groups=channels)
    gx, gy = grad[:, 0::2], grad[:, 1::2]
    return torch.sqrt(gx**2 + gy**2 + 1e-12)


def gms_map(x: Tensor, y: Tensor, c: float = GMS_C) -> Tensor:
    """Per-pixel, per-channel gradient magnitude similarity, in (0, 1], 1 where the gradients agree.

    Args: x (B, C, H, W), y (B, C, H, W), c stability constant. Returns: (B, C, H, W).
    """
    gx, gy = gradient_magnitude(x), gradient_magnitude(y)
    return (2 * gx * gy + c) / (gx**2 + gy**2 + c)


def downscale(x: Tensor, scale: float) -> Tensor:
    """Resizes (B, C, H, W) by ``scale`` <= 1 with area averaging (at least 1x1)."""
    if scale == 1:
        return x
    size = (max(1, round(x.shape[-2] * scale)), max(1, round(x.shape[-1] * scale)))
    return F.interpolate(x, size=size, mode="area")


def gms_distance(x: Tensor, y: Tensor, scales: Sequence[float] = (1.0,), c: float = GMS_C) -> Tensor:
    """Mean ``1 - GMS`` of each image pair, averaged over scales (the GMS loss).

    Args: x (B, C, H, W), y (B, C, H, W), scales downscaling factors. Returns: (B,).
    """
    per_scale = [(1 - gms_map(downscale(x, s), downscale(y, s), c)).flatten(1).mean(1) for s in scales]
    return torch.stack(per_scale).mean(0)


def multiscale_gms_distance_map(
    x: Tensor, y: Tensor, scales: Sequence[float] = (1.0, 0.5, 0.25), c: float = GMS_C
) -> Tensor:
    """Channel-mean ``1 - GMS`` at each scale, upsampled bilinearly to the input size and averaged.

    Args: x (B, C, H, W), y (B, C, H, W), scales downscaling factors. Returns: (B, 1, H, W).
    """
    size = x.shape[-2:]
    maps = []
    for s in scales:
        distance = 1 - gms_map(downscale(x, s), downscale(y, s), c).mean(dim=1, keepdim=True)
        if distance.shape[-2:] != size:
            distance = F.interpolate(distance, size=size, mode="bilinear", align_corners=False)
        maps.append(distance)
    return torch.stack(maps).mean(0)
