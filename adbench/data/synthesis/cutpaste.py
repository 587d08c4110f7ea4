"""CutPaste (Li et al. 2021): a patch cut from the image, colour-jittered and pasted elsewhere.

Two variants: ``"standard"`` (a rectangle of 2..15 % of the image area with a log-uniform aspect ratio,
pasted axis-aligned) and ``"scar"`` (a thin rectangle, a few pixels wide and a few tens long, pasted
rotated); ``"mixed"`` picks one of the two at random per call.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from adbench.data.synthesis.base import AnomalyGenerator, _as_range, rand, rand_int, rand_uniform

__all__ = ["CutPaste", "color_jitter"]

_RGB_TO_YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])


def color_jitter(
    image: Tensor,
    generator: torch.Generator,
    brightness: float = 0.1,
    contrast: float = 0.1,
    saturation: float = 0.1,
    hue: float = 0.1,
) -> Tensor:
    """Random brightness, contrast, saturation and hue change, like torchvision's ``ColorJitter``.

    Factors are uniform in ``[1 - x, 1 + x]`` (hue: a shift uniform in ``[-hue, hue]`` of a full turn,
    done as a rotation of the chroma plane in YIQ space). Saturation and hue need 3 channels and are
    skipped otherwise.

    Args:
        image: (C, H, W) float in [0, 1].
        generator: Source of randomness.
        brightness: Brightness jitter strength.
        contrast: Contrast jitter strength.
        saturation: Saturation jitter strength.
        hue: Hue jitter strength, at most 0.5.

    Returns:
        (C, H, W) jittered image in [0, 1].
    """
    u = rand(generator, 4)
    b = 1.0 + brightness * (2.0 * float(u[0]) - 1.0)
    c = 1.0 + contrast * (2.0 * float(u[1]) - 1.0)
    s = 1.0 + saturation * (2.0 * float(u[2]) - 1.0)
    h = hue * (2.0 * float(u[3]) - 1.0)
    rgb = image.shape[0] == 3
    x = (image * b).clamp(0.0, 1.0)
    gray = _luma(x) if rgb else x.mean(dim=0, keepdim=True)
    x = ((x - gray.mean()) * c + gray.mean()).clamp(0.0, 1.0)
    if rgb:
        gray = _luma(x)
        x = ((x - gray) * s + gray).clamp(0.0, 1.0)
        if h != 0.0:
            m = _RGB_TO_YIQ.to(x.device, x.dtype)
            yiq = torch.einsum("ij,jhw->ihw", m, x)
            a = 2.0 * math.pi * h
            i = math.cos(a) * yiq[1] - math.sin(a) * yiq[2]
            q = math.sin(a) * yiq[1] + math.cos(a) * yiq[2]
            x = torch.einsum("ij,jhw->ihw", torch.linalg.inv(m), torch.stack([yiq[0], i, q])).clamp(0.0, 1.0)
    return x


def _luma(x: Tensor) -> Tensor:
    """(1, H, W) ITU-R 601 luma of a (3, H, W) image."""
    return (0.299 * x[0] + 0.587 * x[1] + 0.114 * x[2])[None]


class CutPaste(AnomalyGenerator):
    """CutPaste and CutPaste-Scar.

    Args:
        probability: Chance that an anomaly is applied at all.
        mode: ``"standard"``, ``"scar"`` or ``"mixed"`` (each call picks one of the two, 50/50).
        area_ratio: (min, max) patch area as a fraction of the image area (standard variant).
        aspect_ratio: Smallest width/height ratio; ratios are log-uniform in ``[r, 1/r]`` (standard).
        scar_width: (min, max) scar width in pixels.
        scar_length: (min, max) scar length in pixels.
        scar_rotation: Largest absolute scar rotation in degrees.
        jitter: Colour-jitter strength for brightness, contrast, saturation and hue (0 disables).
        use_source: Cut the patch from ``source`` when one is passed (default: always from ``image``).
        tolerance: Largest per-pixel change still counted as unchanged (see ``AnomalyGenerator``).
    """

    def __init__(
        self,
        probability: float = 1.0,
        mode: str = "standard",
        area_ratio: tuple[float, float] = (0.02, 0.15),
        aspect_ratio: float = 0.3,
        scar_width: tuple[int, int] = (2, 16),
        scar_length: tuple[int, int] = (10, 25),
        scar_rotation: float = 45.0,
        jitter: float = 0.1,
        use_source: bool = False,
        tolerance: float = 1.0 / 255.0,
    ) -> None:
        super().__init__(probability=probability, tolerance=tolerance)
        if mode not in ("standard", "scar", "mixed"):
            raise ValueError(f"mode must be 'standard', 'scar' or 'mixed', got {mode!r}")
        self.mode = mode
        self.area_ratio = _as_range(area_ratio, "area_ratio")
        if not 0.0 < self.area_ratio[0] <= self.area_ratio[1] <= 1.0:
            raise ValueError(f"area_ratio must lie in (0, 1], got {area_ratio}")
        if not 0.0 < aspect_ratio <= 1.0:
            raise ValueError(f"aspect_ratio must be in (0, 1], got {aspect_ratio}")
        self.aspect_ratio = float(aspect_ratio)
        w_lo, w_hi = _as_range(scar_width, "scar_width")
        l_lo, l_hi = _as_range(scar_length, "scar_length")
        if w_lo < 1 or l_lo < 1:
            raise ValueError("scar_width and scar_length must be >= 1 pixel")
        self.scar_width = (int(w_lo), int(w_hi))
        self.scar_length = (int(l_lo), int(l_hi))
        self.scar_rotation = float(scar_rotation)
        if not 0.0 <= jitter <= 0.5:
            raise ValueError(f"jitter must be in [0, 0.5], got {jitter}")
        self.jitter = float(jitter)
        self.use_source = bool(use_source)

    def synthesize(
        self, image: Tensor, generator: torch.Generator, source: Tensor | None
    ) -> tuple[Tensor, Tensor]:
        """Proposes one cut-and-paste; see ``AnomalyGenerator.synthesize``."""
        _, H, W = image.shape
        scar = self.mode == "scar" or (self.mode == "mixed" and rand(generator, 1).item() < 0.5)
        if scar:
            h = min(rand_int(generator, *self.scar_length), H)
            w = min(rand_int(generator, *self.scar_width), W)
            angle = math.radians(rand_uniform(generator, -self.scar_rotation, self.scar_rotation))
        else:
            area = rand_uniform(generator, *self.area_ratio) * H * W
            log_r = math.log(self.aspect_ratio)
            ratio = math.exp(rand_uniform(generator, log_r, -log_r))
            h = min(max(int(round(math.sqrt(area / ratio))), 1), H)
            w = min(max(int(round(math.sqrt(area * ratio))), 1), W)
            angle = 0.0
        cos, sin = math.cos(angle), math.sin(angle)

        # Cut: axis-aligned h x w box with integer top-left; centre at top-left + (size - 1) / 2.
        src_cy = rand_int(generator, 0, H - h) + (h - 1) / 2.0
        src_cx = rand_int(generator, 0, W - w) + (w - 1) / 2.0
        # Paste: keep the rotated box's bounding extents inside the image where they fit. (For angle 0
        # these are h and w, and the centre lands on the same sub-pixel grid as the cut: an exact copy.)
        ext_h = min(math.ceil(abs(cos) * h + abs(sin) * w - 1e-6), H)
        ext_w = min(math.ceil(abs(sin) * h + abs(cos) * w - 1e-6), W)
        dst_cy = rand_int(generator, 0, H - ext_h) + (ext_h - 1) / 2.0
        dst_cx = rand_int(generator, 0, W - ext_w) + (ext_w - 1) / 2.0

        donor = source if (self.use_source and source is not None) else image
        if self.jitter > 0.0:
            donor = color_jitter(donor, generator, self.jitter, self.jitter, self.jitter, self.jitter)

        dev = image.device
        dy = torch.arange(H, device=dev, dtype=torch.float32).view(H, 1) - dst_cy
        dx = torch.arange(W, device=dev, dtype=torch.float32).view(1, W) - dst_cx
        along_h = cos * dy + sin * dx  # (H, W) patch-local coordinates (inverse rotation)
        along_w = -sin * dy + cos * dx
        region = (along_h.abs() < h / 2.0) & (along_w.abs() < w / 2.0)
        if not bool(region.any()):  # degenerate rotation of a 1-pixel scar: keep its centre pixel
            region[min(int(round(dst_cy)), H - 1), min(int(round(dst_cx)), W - 1)] = True
        rows = (src_cy + along_h).round().long().clamp(0, H - 1)
        cols = (src_cx + along_w).round().long().clamp(0, W - 1)
        pasted = donor[:, rows, cols]  # (C, H, W)
        return torch.where(region, pasted, image), region
