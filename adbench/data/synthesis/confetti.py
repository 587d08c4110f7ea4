"""Confetti noise (FCDD, Liznerski et al. 2021), the synthetic anomaly ADTR+ trains with on MVTec AD.

A few small rotated rectangles ("confetti") of random colour are added onto (or painted over) a normal
image, optionally blurred; the mask covers the blobs.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from adbench.data.synthesis.base import AnomalyGenerator, _as_range, rand, rand_int

__all__ = ["ConfettiNoise"]


def _gaussian_blur(x: Tensor, sigma: float) -> Tensor:
    """Separable Gaussian blur of (C, H, W) with zero padding, kernel truncated at 3 sigma."""
    radius = max(int(math.ceil(3.0 * sigma)), 1)
    t = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    C = x.shape[0]
    out = F.conv2d(x[None], k.view(1, 1, 1, -1).expand(C, 1, 1, -1), padding=(0, radius), groups=C)
    out = F.conv2d(out, k.view(1, 1, -1, 1).expand(C, 1, -1, 1), padding=(radius, 0), groups=C)
    return out[0]


class ConfettiNoise(AnomalyGenerator):
    """FCDD-style confetti noise: several small random-coloured, randomly rotated rectangles.

    Blob sizes are fractions of ``min(H, W)`` (FCDD's 8..54 px at 224 px is about 0.035..0.24), drawn
    separately for height and width. Blobs are vectorized over a (N, H, W) coordinate grid; later blobs
    cover earlier ones. In ``"add"`` mode a per-channel colour offset in ``intensity`` is added to the image
    (FCDD adds the noise and clips); in ``"replace"`` mode blobs are painted with a colour uniform in [0, 1].

    Args:
        probability: Chance that an anomaly is applied at all.
        num_blobs: (min, max) number of blobs, inclusive.
        blob_size: (min, max) blob side length as a fraction of ``min(H, W)``.
        max_rotation: Largest absolute blob rotation in degrees.
        intensity: (low, high) range of the per-channel colour offset in ``"add"`` mode.
        mode: ``"add"`` (offset the image) or ``"replace"`` (paint a solid colour).
        blur_sigma: Standard deviation in pixels of a Gaussian blur of the noise layer (0 disables it);
            the mask then also covers the blurred fringe that visibly changed.
        tolerance: Largest per-pixel change still counted as unchanged (see ``AnomalyGenerator``).
    """

    def __init__(
        self,
        probability: float = 1.0,
        num_blobs: tuple[int, int] = (1, 8),
        blob_size: tuple[float, float] = (0.03, 0.2),
        max_rotation: float = 45.0,
        intensity: tuple[float, float] = (-1.0, 1.0),
        mode: str = "add",
        blur_sigma: float = 0.0,
        tolerance: float = 1.0 / 255.0,
    ) -> None:
        super().__init__(probability=probability, tolerance=tolerance)
        lo, hi = _as_range(num_blobs, "num_blobs")
        if lo < 1:
            raise ValueError(f"num_blobs must be >= 1, got {num_blobs}")
        self.num_blobs = (int(lo), int(hi))
        self.blob_size = _as_range(blob_size, "blob_size")
        if self.blob_size[0] <= 0.0:
            raise ValueError(f"blob_size must be > 0, got {blob_size}")
        self.max_rotation = float(max_rotation)
        self.intensity = _as_range(intensity, "intensity")
        if mode not in ("add", "replace"):
            raise ValueError(f"mode must be 'add' or 'replace', got {mode!r}")
        self.mode = mode
        if blur_sigma < 0.0:
            raise ValueError(f"blur_sigma must be >= 0, got {blur_sigma}")
        self.blur_sigma = float(blur_sigma)

    def synthesize(
        self, image: Tensor, generator: torch.Generator, source: Tensor | None
    ) -> tuple[Tensor, Tensor]:
        """Proposes one confetti layer; see ``AnomalyGenerator.synthesize``. ``source`` is unused."""
        C, H, W = image.shape
        dev = image.device
        n = rand_int(generator, *self.num_blobs)
        side = min(H, W)
        u = rand(generator, n, 7, device=dev)
        lo, hi = self.blob_size
        half_h = ((lo + (hi - lo) * u[:, 0]) * side / 2.0).clamp_min(0.5)  # (N,)
        half_w = ((lo + (hi - lo) * u[:, 1]) * side / 2.0).clamp_min(0.5)
        cy = u[:, 2] * (H - 1)
        cx = u[:, 3] * (W - 1)
        theta = torch.deg2rad((2.0 * u[:, 4] - 1.0) * self.max_rotation)
        ys = torch.arange(H, device=dev, dtype=torch.float32).view(1, H, 1) - cy.view(n, 1, 1)
        xs = torch.arange(W, device=dev, dtype=torch.float32).view(1, 1, W) - cx.view(n, 1, 1)
        cos, sin = torch.cos(theta).view(n, 1, 1), torch.sin(theta).view(n, 1, 1)
        along_h = cos * ys - sin * xs  # (N, H, W) blob-local coordinates
        along_w = sin * ys + cos * xs
        inside = (along_h.abs() <= half_h.view(n, 1, 1)) & (along_w.abs() <= half_w.view(n, 1, 1))
        # Painter's order: the last blob covering a pixel wins; index 0 means "no blob".
        order = torch.arange(1, n + 1, device=dev).view(n, 1, 1)
        top = (inside * order).amax(dim=0)  # (H, W)
        region = top > 0
        if not bool(region.any()):  # every blob fell between pixel centres: force the first one's centre
            region[int(cy[0].round()), int(cx[0].round())] = True
            top = torch.where(region, torch.ones_like(top), top)

        if self.mode == "add":
            lo_i, hi_i = self.intensity
            colours = lo_i + (hi_i - lo_i) * rand(generator, n, C, device=dev)
        else:
            colours = rand(generator, n, C, device=dev)
        palette = torch.cat([colours.new_zeros(1, C), colours], dim=0).to(image.dtype)  # (N + 1, C)
        layer = palette[top].permute(2, 0, 1)  # (C, H, W)

        if self.mode == "add":
            if self.blur_sigma > 0.0:
                layer = _gaussian_blur(layer, self.blur_sigma)
                region = layer.abs().amax(dim=0) > 0
            return image + layer, region
        painted = torch.where(region, layer, image)
        if self.blur_sigma > 0.0:
            # Blur the painted image, and keep the blurred result only around the blobs.
            alpha = _gaussian_blur(region[None].to(image.dtype), self.blur_sigma)[0]
            colour = _gaussian_blur(layer * region, self.blur_sigma) / alpha.clamp_min(1e-6)
            painted = image + alpha * (colour - image)
            region = alpha > 0
        return painted, region
