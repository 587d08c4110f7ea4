"""Perlin noise, Perlin masks and image-space Perlin smudges (DRAEM / DSR style)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from adbench.data.synthesis.base import AnomalyGenerator, _as_range, rand, rand_int, rand_uniform

__all__ = [
    "PerlinSmudge",
    "perlin_mask",
    "perlin_noise_2d",
    "rotated_perlin_noise_2d",
]


def _fade(t: Tensor) -> Tensor:
    """Perlin's quintic smoothstep 6t^5 - 15t^4 + 10t^3."""
    return t * t * t * (t * (t * 6.0 - 15.0) + 10.0)


def _gradient_noise(y: Tensor, x: Tensor, angles: Tensor) -> Tensor:
    """Evaluates Perlin gradient noise at lattice coordinates.

    Args:
        y: Lattice row coordinates (any shape), >= 0 and < ``angles.shape[0] - 1``.
        x: Lattice column coordinates (same shape), >= 0 and < ``angles.shape[1] - 1``.
        angles: (GH, GW) gradient directions in radians at the lattice points.

    Returns:
        Noise of the shape of ``y``, scaled by sqrt(2) to lie within [-1, 1].
    """
    gy, gx = torch.sin(angles), torch.cos(angles)
    y0 = y.floor().long().clamp(0, angles.shape[0] - 2)
    x0 = x.floor().long().clamp(0, angles.shape[1] - 2)
    fy, fx = y - y0, x - x0

    def corner(dy: int, dx: int) -> Tensor:
        return gy[y0 + dy, x0 + dx] * (fy - dy) + gx[y0 + dy, x0 + dx] * (fx - dx)

    u, v = _fade(fx), _fade(fy)
    top = torch.lerp(corner(0, 0), corner(0, 1), u)
    bottom = torch.lerp(corner(1, 0), corner(1, 1), u)
    return math.sqrt(2.0) * torch.lerp(top, bottom, v)


def perlin_noise_2d(
    shape: tuple[int, int],
    scale: tuple[int, int],
    generator: torch.Generator,
    device: torch.device | str | None = None,
) -> Tensor:
    """2-D Perlin gradient noise with ``scale`` lattice cells along (rows, columns).

    Args:
        shape: Output size (H, W).
        scale: Number of noise periods (lattice cells) along H and W; need not divide ``shape``.
        generator: Source of the random gradients.
        device: Output device (default: the generator's).

    Returns:
        (H, W) float32 noise in [-1, 1].
    """
    H, W = int(shape[0]), int(shape[1])
    sy, sx = max(int(scale[0]), 1), max(int(scale[1]), 1)
    device = generator.device if device is None else torch.device(device)
    angles = 2.0 * math.pi * rand(generator, sy + 1, sx + 1, device=device)
    y = torch.arange(H, device=device, dtype=torch.float32) * (sy / H)
    x = torch.arange(W, device=device, dtype=torch.float32) * (sx / W)
    yy, xx = torch.meshgrid(y, x, indexing="ij")
    return _gradient_noise(yy, xx, angles)


def rotated_perlin_noise_2d(
    shape: tuple[int, int],
    scale: tuple[int, int],
    angle: float,
    generator: torch.Generator,
    device: torch.device | str | None = None,
) -> Tensor:
    """Perlin noise whose lattice is rotated by ``angle`` degrees about the image centre.

    Unlike rotating a noise image, this evaluates the noise directly at rotated coordinates, so there are
    no empty corners; the lattice also gets a random sub-cell offset (no all-zero rows at lattice points).

    Args:
        shape: Output size (H, W).
        scale: Lattice cells along H and W before rotation.
        angle: Rotation in degrees.
        generator: Source of randomness.
        device: Output device (default: the generator's).

    Returns:
        (H, W) float32 noise in [-1, 1].
    """
    H, W = int(shape[0]), int(shape[1])
    sy, sx = max(int(scale[0]), 1), max(int(scale[1]), 1)
    device = generator.device if device is None else torch.device(device)
    theta = math.radians(angle)
    cos, sin = math.cos(theta), math.sin(theta)
    py = torch.arange(H, device=device, dtype=torch.float32) - (H - 1) / 2.0
    px = torch.arange(W, device=device, dtype=torch.float32) - (W - 1) / 2.0
    py, px = torch.meshgrid(py, px, indexing="ij")
    ly = (cos * py - sin * px) * (sy / H)
    lx = (sin * py + cos * px) * (sx / W)
    offset = rand(generator, 2, device=device)
    ly = ly - ly.min() + offset[0]
    lx = lx - lx.min() + offset[1]
    gh = int(ly.max().floor().item()) + 2
    gw = int(lx.max().floor().item()) + 2
    angles = 2.0 * math.pi * rand(generator, gh, gw, device=device)
    return _gradient_noise(ly, lx, angles)


def perlin_mask(
    shape: tuple[int, int],
    generator: torch.Generator,
    min_scale_exp: int = 0,
    max_scale_exp: int = 6,
    threshold: float = 0.5,
    max_rotation: float = 90.0,
    max_tries: int = 50,
    device: torch.device | str | None = None,
) -> Tensor:
    """DRAEM/DSR-style binary Perlin mask.

    Draws scales ``2**ky`` and ``2**kx`` with exponents uniform in ``[min_scale_exp, max_scale_exp)``
    (exclusive upper end, as in DRAEM; ``min_scale_exp`` alone when the range is empty), rotates the noise
    by a random angle in ``[-max_rotation, max_rotation]`` degrees and thresholds it. Redraws until the
    mask is non-empty; after ``max_tries`` empty draws it keeps the top 1 % of the last noise instead.

    Args:
        shape: Mask size (H, W), e.g. (256, 256) in image space or (64, 64) / (32, 32) in feature space.
        generator: Source of randomness.
        min_scale_exp: Smallest scale exponent.
        max_scale_exp: Exclusive upper bound of the scale exponent.
        threshold: Noise level above which a pixel is masked (noise is within [-1, 1]).
        max_rotation: Largest absolute rotation of the noise in degrees.
        max_tries: Draws before the top-1 % fallback.
        device: Output device (default: the generator's).

    Returns:
        (H, W) float32 mask in {0, 1}, never empty.
    """
    hi = max(int(max_scale_exp) - 1, int(min_scale_exp))
    noise = torch.zeros(0)
    for _ in range(max(int(max_tries), 1)):
        ky = rand_int(generator, int(min_scale_exp), hi)
        kx = rand_int(generator, int(min_scale_exp), hi)
        angle = rand_uniform(generator, -max_rotation, max_rotation)
        noise = rotated_perlin_noise_2d(shape, (2**ky, 2**kx), angle, generator, device=device)
        mask = noise > threshold
        if bool(mask.any()):
            return mask.float()
    return (noise >= torch.quantile(noise.flatten(), 0.99)).float()


# --------------------------------------------------------------------------------------------------------
# Image-space Perlin smudge.
# --------------------------------------------------------------------------------------------------------


def shifted_copy(image: Tensor, generator: torch.Generator, flip: bool = True) -> Tensor:
    """A copy of ``image`` (C, H, W) rolled by a random 1/4..3/4 of its size, optionally randomly flipped."""
    _, H, W = image.shape
    dy = rand_int(generator, H // 4, (3 * H) // 4)
    dx = rand_int(generator, W // 4, (3 * W) // 4)
    out = torch.roll(image, shifts=(dy, dx), dims=(1, 2))
    if flip:
        flips = rand(generator, 2)
        if flips[0] < 0.5:
            out = out.flip(1)
        if flips[1] < 0.5:
            out = out.flip(2)
    return out


class PerlinSmudge(AnomalyGenerator):
    """DSR stage-3 / DRAEM-like "copy-paste smudge": a Perlin-shaped region filled from another image.

    ``out = image * (1 - m) + m * (beta * image + (1 - beta) * fill)`` with ``m`` a Perlin mask and ``fill``
    the ``source`` image (or, without one, a randomly shifted and flipped copy of ``image``);
    ``beta`` (opacity of the original) is uniform in ``beta``.

    Args:
        probability: Chance that an anomaly is applied at all.
        min_scale_exp: Smallest Perlin scale exponent (scales are ``2**k``).
        max_scale_exp: Exclusive upper bound of the Perlin scale exponent.
        threshold: Perlin noise threshold of the mask.
        beta: (low, high) range of the weight the original image keeps inside the mask.
        tolerance: Largest per-pixel change still counted as unchanged (see :class:`AnomalyGenerator`).
    """

    def __init__(
        self,
        probability: float = 1.0,
        min_scale_exp: int = 0,
        max_scale_exp: int = 6,
        threshold: float = 0.5,
        beta: tuple[float, float] = (0.0, 0.8),
        tolerance: float = 1.0 / 255.0,
    ) -> None:
        super().__init__(probability=probability, tolerance=tolerance)
        self.min_scale_exp = int(min_scale_exp)
        self.max_scale_exp = int(max_scale_exp)
        self.threshold = float(threshold)
        self.beta = _as_range(beta, "beta")
        if not 0.0 <= self.beta[0] <= self.beta[1] < 1.0:
            raise ValueError(f"beta must lie in [0, 1), got {beta}")

    def synthesize(
        self, image: Tensor, generator: torch.Generator, source: Tensor | None
    ) -> tuple[Tensor, Tensor]:
        """Proposes one smudge; see :meth:`AnomalyGenerator.synthesize`."""
        _, H, W = image.shape
        mask = perlin_mask(
            (H, W), generator, self.min_scale_exp, self.max_scale_exp, self.threshold, device=image.device
        ).bool()
        fill = source if source is not None else shifted_copy(image, generator)
        beta = rand_uniform(generator, *self.beta)
        blended = beta * image + (1.0 - beta) * fill
        return torch.where(mask, blended, image), mask
