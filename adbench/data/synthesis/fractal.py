"""Fractal anomalies (FractalAD): IFS-attractor masks filled with content from a normal image.

An iterated function system (IFS) of a few random contractive affine maps is rendered with the chaos
game (vectorized over points), rasterized into a random box of the image and closed into blobs; the
resulting mask is filled with a patch of another normal image (or of the same image at another position).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
import torchvision.transforms.functional as TF
from torch import Tensor

from adbench.data.synthesis.base import AnomalyGenerator, _as_range, rand, rand_int, rand_uniform

__all__ = ["FractalAnomaly", "fractal_mask", "random_ifs"]


def random_ifs(
    generator: torch.Generator,
    num_maps: int,
    contraction: tuple[float, float] = (0.25, 0.8),
    device: torch.device | str | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Random contractive affine maps ``x -> A x + b`` of the plane.

    Each ``A = R(phi) diag(s1, s2) R(psi)`` (with a random reflection) has singular values in
    ``contraction``; ``b`` is uniform in [-1, 1]^2. Maps are picked with probability proportional to
    ``|det A|`` (the usual choice, so every part of the attractor gets sampled evenly).

    Args:
        generator: Source of randomness.
        num_maps: Number of affine maps.
        contraction: (low, high) range of the singular values, both < 1.
        device: Output device (default: the generator's).

    Returns:
        ``A`` (M, 2, 2), ``b`` (M, 2) and selection probabilities (M,).
    """
    device = generator.device if device is None else torch.device(device)
    u = rand(generator, num_maps, 7, device=device)
    lo, hi = contraction
    s = lo + (hi - lo) * u[:, :2]
    phi, psi = 2.0 * math.pi * u[:, 2], 2.0 * math.pi * u[:, 3]

    def rotation(a: Tensor) -> Tensor:
        c, si = torch.cos(a), torch.sin(a)
        return torch.stack([torch.stack([c, -si], -1), torch.stack([si, c], -1)], -2)

    reflect = torch.where(u[:, 4] < 0.5, -1.0, 1.0)
    diag = torch.diag_embed(torch.stack([s[:, 0], s[:, 1] * reflect], -1))
    A = rotation(phi) @ diag @ rotation(psi)
    b = 2.0 * u[:, 5:7] - 1.0
    weights = (s[:, 0] * s[:, 1]).clamp_min(1e-3)
    return A, b, weights / weights.sum()


def _chaos_game(
    mats: Tensor,
    b: Tensor,
    probs: Tensor,
    generator: torch.Generator,
    num_points: int,
    iterations: int,
    burn_in: int,
) -> Tensor:
    """Runs ``num_points`` chaos games in parallel; returns the (K, 2) visited points after ``burn_in``."""
    device = mats.device
    x = 2.0 * rand(generator, num_points, 2, device=device) - 1.0
    picks = torch.multinomial(
        probs.to(generator.device), iterations * num_points, replacement=True, generator=generator
    ).to(device)
    picks = picks.view(iterations, num_points)
    visited = []
    for t in range(iterations):
        k = picks[t]
        x = torch.einsum("nij,nj->ni", mats[k], x) + b[k]
        if t >= burn_in:
            visited.append(x)
    return torch.cat(visited, dim=0)


def _dilate(mask: Tensor, size: int) -> Tensor:
    """Binary dilation of an (H, W) float mask with a square of side ``size`` (rounded up to odd)."""
    if size <= 1:
        return mask
    r = size // 2
    return F.max_pool2d(mask[None, None], kernel_size=2 * r + 1, stride=1, padding=r)[0, 0]


def _close(mask: Tensor, size: int) -> Tensor:
    """Binary closing (dilate, then erode) of an (H, W) float mask with a square of side ``size``.

    Done on a zero-padded canvas, as on an unbounded plane: the result contains ``mask`` and stays within
    its bounding box (so blobs touching the border neither erode nor grow there).
    """
    if size <= 1:
        return mask
    r = size // 2
    x = F.pad(mask[None, None], (2 * r, 2 * r, 2 * r, 2 * r))
    x = F.max_pool2d(x, kernel_size=2 * r + 1, stride=1, padding=r)
    x = -F.max_pool2d(-x, kernel_size=2 * r + 1, stride=1, padding=r)
    return x[0, 0, 2 * r : -2 * r, 2 * r : -2 * r]


def fractal_mask(
    shape: tuple[int, int],
    generator: torch.Generator,
    num_maps: tuple[int, int] = (2, 4),
    scale: tuple[float, float] = (0.15, 0.5),
    num_points: int = 512,
    iterations: int = 40,
    dilation: int = 3,
    closing: int = 5,
    device: torch.device | str | None = None,
) -> Tensor:
    """A random fractal blob mask.

    Renders the attractor of a random IFS (see :func:`random_ifs`) with the chaos game, stretches it into
    a random box whose sides are ``scale`` fractions of H and W, placed uniformly inside the image, then
    dilates and morphologically closes it so the dust forms blobs.

    Args:
        shape: Mask size (H, W).
        generator: Source of randomness.
        num_maps: (min, max) number of affine maps, inclusive.
        scale: (min, max) box side as a fraction of the image side (drawn separately for H and W).
        num_points: Parallel chaos games; the points rendered are ``num_points * (iterations - 10)``.
        iterations: Chaos-game steps per point (the first 10 are burn-in).
        dilation: Square dilation size in pixels (<= 1 disables).
        closing: Square closing size in pixels (<= 1 disables).
        device: Output device (default: the generator's).

    Returns:
        (H, W) float32 mask in {0, 1}, non-empty.
    """
    H, W = int(shape[0]), int(shape[1])
    device = generator.device if device is None else torch.device(device)
    m = rand_int(generator, int(num_maps[0]), int(num_maps[1]))
    A, b, probs = random_ifs(generator, max(m, 1), device=device)
    burn_in = min(10, max(iterations - 1, 0))
    pts = _chaos_game(A, b, probs, generator, num_points, max(iterations, 1), burn_in)

    # Random box inside the image; stretch the attractor's bounding box onto it (per axis).
    box_h = max(1.0, rand_uniform(generator, *scale) * H)
    box_w = max(1.0, rand_uniform(generator, *scale) * W)
    top = rand_uniform(generator, 0.0, H - box_h)
    left = rand_uniform(generator, 0.0, W - box_w)
    lo, hi = pts.amin(dim=0), pts.amax(dim=0)
    unit = (pts - lo) / (hi - lo).clamp_min(1e-6)
    rows = (top + unit[:, 0] * (box_h - 1.0)).round().long().clamp(0, H - 1)
    cols = (left + unit[:, 1] * (box_w - 1.0)).round().long().clamp(0, W - 1)
    mask = torch.zeros(H * W, device=device)
    mask[rows * W + cols] = 1.0
    mask = _dilate(mask.view(H, W), dilation)
    mask = _close(mask, closing)
    return (mask > 0.5).float()


def _bbox(mask: Tensor) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) half-open bounding box of a non-empty (H, W) mask."""
    rows = torch.nonzero(mask.any(dim=1)).flatten()
    cols = torch.nonzero(mask.any(dim=0)).flatten()
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


class FractalAnomaly(AnomalyGenerator):
    """FractalAD-style anomaly: a fractal mask filled with a patch of another normal image.

    The patch under the mask's bounding box is taken from ``source`` (or, when None, from ``image``
    itself) at a random position, different from the mask's own when it comes from ``image``; inside the
    mask ``out = beta * image + (1 - beta) * patch`` with ``beta`` uniform in ``beta``.

    Args:
        probability: Chance that an anomaly is applied at all.
        num_maps: (min, max) number of IFS affine maps.
        scale: (min, max) fractal box side as a fraction of the image side.
        beta: (low, high) weight the original image keeps inside the mask (0 = opaque paste).
        dilation: Square dilation of the rasterized attractor in pixels.
        closing: Square morphological closing in pixels.
        flip: Randomly flip the pasted patch horizontally / vertically.
        jitter: Color change of the pasted patch (public FractalAD: 0.2): one of three, uniformly:
            brightness, contrast, saturation and hue jittered by up to ``jitter`` (applied in that order);
            brightness and contrast factors uniform in [0, 2]; or two random channels (possibly the same
            one twice) scaled by factors uniform in [0, 2). 0 disables.
        rotation: (min, max) degrees the patch is rotated by, about its center, without expanding it; the
            corners the rotation leaves empty are removed from the mask (public FractalAD: (15, 75)).
            (0, 0) disables.
        noise: Standard deviation (image units, [0, 1] scale) of Gaussian noise, the same for every
            channel, added inside the mask with probability 0.5 (public FractalAD: 10 / 255). 0 disables.
        tolerance: Largest per-pixel change still counted as unchanged (see ``AnomalyGenerator``).
    """

    def __init__(
        self,
        probability: float = 1.0,
        num_maps: tuple[int, int] = (2, 4),
        scale: tuple[float, float] = (0.15, 0.5),
        beta: tuple[float, float] = (0.0, 0.5),
        dilation: int = 3,
        closing: int = 5,
        flip: bool = True,
        jitter: float = 0.0,
        rotation: tuple[float, float] = (0.0, 0.0),
        noise: float = 0.0,
        tolerance: float = 1.0 / 255.0,
    ) -> None:
        super().__init__(probability=probability, tolerance=tolerance)
        lo, hi = _as_range(num_maps, "num_maps")
        if lo < 1:
            raise ValueError(f"num_maps must be >= 1, got {num_maps}")
        self.num_maps = (int(lo), int(hi))
        self.scale = _as_range(scale, "scale")
        if not 0.0 < self.scale[0] <= self.scale[1] <= 1.0:
            raise ValueError(f"scale must lie in (0, 1], got {scale}")
        self.beta = _as_range(beta, "beta")
        if not 0.0 <= self.beta[0] <= self.beta[1] < 1.0:
            raise ValueError(f"beta must lie in [0, 1), got {beta}")
        self.dilation = int(dilation)
        self.closing = int(closing)
        self.flip = bool(flip)
        if jitter < 0 or noise < 0:
            raise ValueError(f"jitter and noise must be >= 0, got {jitter} and {noise}")
        self.jitter = float(jitter)
        self.rotation = _as_range(rotation, "rotation")
        self.noise = float(noise)

    def synthesize(
        self, image: Tensor, generator: torch.Generator, source: Tensor | None
    ) -> tuple[Tensor, Tensor]:
        """Proposes one fractal paste; see ``AnomalyGenerator.synthesize``."""
        _, H, W = image.shape
        mask = fractal_mask(
            (H, W),
            generator,
            num_maps=self.num_maps,
            scale=self.scale,
            dilation=self.dilation,
            closing=self.closing,
            device=image.device,
        ).bool()
        y0, y1, x0, x1 = _bbox(mask)
        h, w = y1 - y0, x1 - x0
        donor = image if source is None else source
        sy = rand_int(generator, 0, H - h)
        sx = rand_int(generator, 0, W - w)
        if source is None and (sy, sx) == (y0, x0) and (h < H or w < W):
            # Same image, same place: move the donor box to the farthest valid position instead.
            sy, sx = (0 if y0 > (H - h) // 2 else H - h), (0 if x0 > (W - w) // 2 else W - w)
        patch = donor[:, sy : sy + h, sx : sx + w]
        if self.flip:
            flips = rand(generator, 2)
            if flips[0] < 0.5:
                patch = patch.flip(1)
            if flips[1] < 0.5:
                patch = patch.flip(2)
        if self.jitter > 0:
            patch = jitter_colors(patch, self.jitter, generator)
        if self.rotation != (0.0, 0.0):
            patch, inside = rotate_patch(patch, rand_uniform(generator, *self.rotation))
            mask[y0:y1, x0:x1] &= inside
        fill = image.clone()
        fill[:, y0:y1, x0:x1] = patch
        beta = rand_uniform(generator, *self.beta)
        blended = beta * image + (1.0 - beta) * fill
        out = torch.where(mask, blended, image)
        if self.noise > 0 and rand(generator, 1).item() < 0.5:
            noise = self.noise * torch.randn((1, H, W), generator=generator, device=generator.device)
            out = torch.where(mask, (out + noise.to(out.device)).clamp(0, 1), out)
        return out, mask


def jitter_colors(patch: Tensor, strength: float, generator: torch.Generator) -> Tensor:
    """One of FractalAD's three patch color changes, chosen uniformly (see ``FractalAnomaly.jitter``).

    Args:
        patch: (3, h, w) in [0, 1].
        strength: jitter of brightness, contrast, saturation and hue in the first change.
        generator: random stream.

    Returns:
        (3, h, w) in [0, 1].
    """
    choice = rand_int(generator, 0, 2)
    if choice == 0:
        for adjust in (TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation):
            patch = adjust(patch, rand_uniform(generator, max(0.0, 1 - strength), 1 + strength))
        return TF.adjust_hue(patch, rand_uniform(generator, -min(strength, 0.5), min(strength, 0.5)))
    if choice == 1:
        patch = TF.adjust_brightness(patch, rand_uniform(generator, 0.0, 2.0))
        return TF.adjust_contrast(patch, rand_uniform(generator, 0.0, 2.0))
    scale = torch.ones(3, 1, 1, device=patch.device)
    for channel, factor in zip(rand(generator, 2), rand(generator, 2), strict=True):
        scale[min(int(channel * 3), 2)] = 2.0 * float(factor)
    return (patch * scale).clamp(0, 1)


def rotate_patch(patch: Tensor, degrees: float) -> tuple[Tensor, Tensor]:
    """Rotates a patch about its center without expanding it.

    Args:
        patch: (C, h, w).
        degrees: counter-clockwise angle.

    Returns:
        The rotated patch (C, h, w) (bilinear) and (h, w) bool: the pixels the rotated patch covers.
    """
    ones = torch.ones_like(patch[:1])
    rotated = TF.rotate(torch.cat((patch, ones)), degrees, interpolation=TF.InterpolationMode.BILINEAR)
    coverage = rotated[-1:]
    # Bilinear samples at the rim mix in the zero fill: divide it out (coverage > 0.5 where used).
    return rotated[:-1] / coverage.clamp_min(0.5), coverage[0] > 0.5
