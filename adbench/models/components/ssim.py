"""Gaussian filtering and the structural similarity index (SSIM, Wang et al. 2004).

SSIM here follows the original definition: local statistics under an 11x11 Gaussian window (sigma 1.5),
constants ``C1 = (0.01 L)^2`` and ``C2 = (0.03 L)^2`` for data range ``L``, population (not sample)
variances, and the map computed only where the window fits inside the image ("valid" positions), so no
padding convention enters the result. Images smaller than the window use a window as large as the image
(same sigma).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def gaussian_kernel1d(sigma: float, size: int | None = None, truncate: float = 4.0) -> Tensor:
    """Normalized 1D Gaussian.

    Args:
        sigma: standard deviation in pixels.
        size: kernel length (odd); default ``2 * ceil(truncate * sigma) + 1``.
        truncate: half-width in standard deviations when ``size`` is None.

    Returns:
        (size,) float32 weights summing to 1.
    """
    if sigma <= 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    if size is None:
        size = 2 * math.ceil(truncate * sigma) + 1
    if size < 1 or size % 2 == 0:
        raise ValueError(f"kernel size must be a positive odd number, got {size}")
    x = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    kernel = torch.exp(-(x**2) / (2 * sigma**2))
    return kernel / kernel.sum()


def separable_filter(x: Tensor, kernel: Tensor, padding: str | None = "replicate") -> Tensor:
    """Filters every channel with ``kernel`` along rows then columns.

    Args:
        x: (B, C, H, W).
        kernel: (k,) 1D kernel, k odd.
        padding: ``F.pad`` mode keeping the size ("replicate", "reflect", "constant"), or None for valid
            positions only (output (B, C, H - k + 1, W - k + 1)).

    Returns:
        The filtered tensor.
    """
    channels = x.shape[1]
    k = kernel.numel()
    kernel = kernel.to(device=x.device, dtype=x.dtype)
    if padding is not None:
        x = F.pad(x, (k // 2, k // 2, k // 2, k // 2), mode=padding)
    x = F.conv2d(x, kernel.view(1, 1, 1, k).expand(channels, 1, 1, k), groups=channels)
    return F.conv2d(x, kernel.view(1, 1, k, 1).expand(channels, 1, k, 1), groups=channels)


def gaussian_filter(x: Tensor, sigma: float, truncate: float = 4.0, padding: str = "replicate") -> Tensor:
    """Gaussian blur of every channel, same size (kernel half-width ``ceil(truncate * sigma)``).

    Args: x (B, C, H, W). Returns: (B, C, H, W).
    """
    return separable_filter(x, gaussian_kernel1d(sigma, truncate=truncate), padding)


def mean_filter(x: Tensor, size: int, padding: str = "replicate") -> Tensor:
    """Box (mean) filter of odd ``size`` over every channel, same size.

    Args: x (B, C, H, W). Returns: (B, C, H, W).
    """
    if size < 1 or size % 2 == 0:
        raise ValueError(f"mean filter size must be a positive odd number, got {size}")
    return separable_filter(x, torch.full((size,), 1.0 / size), padding)


def ssim_map(
    x: Tensor,
    y: Tensor,
    window_size: int = 11,
    sigma: float = 1.5,
    data_range: float = 1.0,
    k1: float = 0.01,
    k2: float = 0.03,
) -> Tensor:
    """Per-pixel, per-channel SSIM at the valid window positions.

    Args:
        x: (B, C, H, W).
        y: (B, C, H, W).
        window_size: side of the Gaussian window (odd); reduced to the largest odd size that fits.
        sigma: standard deviation of the Gaussian window.
        data_range: value range of the images (1 for [0, 1] images).
        k1: luminance constant factor.
        k2: contrast constant factor.

    Returns:
        (B, C, H - w + 1, W - w + 1) SSIM values (1 where x == y), w the window actually used.
    """
    if x.shape != y.shape:
        raise ValueError(f"ssim needs equal shapes, got {tuple(x.shape)} and {tuple(y.shape)}")
    size = min(window_size, x.shape[-2], x.shape[-1])
    size -= 1 - size % 2  # largest odd size that fits
    kernel = gaussian_kernel1d(sigma, size)
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    stats = separable_filter(torch.cat([x, y, x * x, y * y, x * y], dim=1), kernel, padding=None)
    mu_x, mu_y, xx, yy, xy = stats.chunk(5, dim=1)
    var_x = xx - mu_x**2
    var_y = yy - mu_y**2
    cov = xy - mu_x * mu_y
    numerator = (2 * mu_x * mu_y + c1) * (2 * cov + c2)
    denominator = (mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2)
    return numerator / denominator


def ssim(x: Tensor, y: Tensor, **kwargs) -> Tensor:
    """Mean SSIM of each image pair (over channels and valid positions).

    Args: x (B, C, H, W), y (B, C, H, W); kwargs as :func:`ssim_map`. Returns: (B,).
    """
    return ssim_map(x, y, **kwargs).flatten(1).mean(dim=1)
