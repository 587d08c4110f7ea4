"""The generator base class and the seeded sampling helpers every synthesis module shares.

All randomness is drawn from the ``torch.Generator`` passed in, never from global state.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

# --------------------------------------------------------------------------------------------------------
# Seeded sampling helpers (shared by the other generator modules).
# --------------------------------------------------------------------------------------------------------


def rand(generator: torch.Generator, *size: int, device: torch.device | str | None = None) -> Tensor:
    """Uniform [0, 1) float32 samples of ``size`` drawn from ``generator``, moved to ``device``."""
    out = torch.rand(size, generator=generator, device=generator.device)
    return out if device is None else out.to(device)


def rand_uniform(generator: torch.Generator, low: float, high: float) -> float:
    """One float drawn uniformly from [low, high]."""
    return float(low + (high - low) * rand(generator, 1).item())


def rand_int(generator: torch.Generator, low: int, high: int) -> int:
    """One integer drawn uniformly from the closed range [low, high] (``low`` if ``high < low``)."""
    if high <= low:
        return int(low)
    return int(torch.randint(low, high + 1, (1,), generator=generator, device=generator.device).item())


def _as_range(value: float | tuple[float, float] | list[float], name: str) -> tuple[float, float]:
    """Normalizes a scalar or a pair into an ordered ``(low, high)`` float tuple."""
    if isinstance(value, (int, float)):
        return float(value), float(value)
    if len(value) != 2:
        raise ValueError(f"{name} must be a number or a (low, high) pair, got {value!r}")
    low, high = float(value[0]), float(value[1])
    if high < low:
        raise ValueError(f"{name} must satisfy low <= high, got {value!r}")
    return low, high


# --------------------------------------------------------------------------------------------------------
# Base class.
# --------------------------------------------------------------------------------------------------------


class AnomalyGenerator:
    """Base class of the synthetic-anomaly generators.

    A generator is called as ``gen(image, generator, source=None) -> (augmented, mask)``.
    Subclasses implement :meth:`synthesize`, which proposes an altered image and the region it touched;
    the base class handles ``probability``, checks shapes, clamps to [0, 1] and tightens the mask to the
    pixels that actually changed by more than ``tolerance`` (pixels outside the mask are restored
    bit-exactly). When a proposal changes nothing visible (e.g. a flat image), it retries a few times and
    finally returns the proposed region as mask so an applied anomaly never has an empty mask.

    Args:
        probability: Chance that an anomaly is applied at all.
        tolerance: Largest per-pixel change (max over channels) still counted as "unchanged".
    """

    #: How many proposals are tried before falling back to the proposed (untightened) region.
    max_attempts: int = 8

    def __init__(self, probability: float = 1.0, tolerance: float = 1.0 / 255.0) -> None:
        if not 0.0 <= probability <= 1.0:
            raise ValueError(f"probability must be in [0, 1], got {probability}")
        if tolerance < 0.0:
            raise ValueError(f"tolerance must be >= 0, got {tolerance}")
        self.probability = float(probability)
        self.tolerance = float(tolerance)

    def synthesize(
        self, image: Tensor, generator: torch.Generator, source: Tensor | None
    ) -> tuple[Tensor, Tensor]:
        """Proposes one anomaly.

        Args:
            image: (C, H, W) float in [0, 1].
            generator: Source of all randomness.
            source: (C, H, W) other normal image resized to ``image``'s size, or None.

        Returns:
            The altered image (C, H, W) (may leave [0, 1]; it is clamped afterwards) and the non-empty
            region it altered, (H, W) bool.
        """
        raise NotImplementedError

    def __call__(
        self, image: Tensor, generator: torch.Generator, source: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """Applies the anomaly with chance ``probability``.

        Args:
            image: (C, H, W) float in [0, 1] (C is 3 for RGB).
            generator: ``torch.Generator`` all randomness is drawn from.
            source: Optional other normal image (C, H', W') to take fill content from; resized to (H, W).

        Returns:
            ``(augmented, mask)``: augmented (C, H, W) in [0, 1] with ``image``'s dtype and mask (1, H, W)
            float in {0, 1}, exactly the pixels that changed. Unchanged image and zero mask when not applied.
        """
        if image.ndim != 3 or not image.is_floating_point():
            raise ValueError(
                f"image must be a float (C, H, W) tensor, got {tuple(image.shape)}, {image.dtype}"
            )
        _, H, W = image.shape
        if source is not None:
            source = _match_source(source, image)
        zero_mask = image.new_zeros(1, H, W)
        if self.probability < 1.0 and rand(generator, 1).item() >= self.probability:
            return image.clone(), zero_mask
        region = torch.zeros(H, W, dtype=torch.bool, device=image.device)
        out = image
        for _ in range(self.max_attempts):
            out, region = self.synthesize(image, generator, source)
            out = out.to(image.dtype).clamp(0.0, 1.0)
            region = region.to(image.device, torch.bool)
            changed = (out - image).abs().amax(dim=0) > self.tolerance
            mask = region & changed
            if bool(mask.any()):
                return torch.where(mask, out, image), mask[None].to(image.dtype)
        # Nothing visible after all attempts (e.g. constant image): keep the proposed region as ground truth.
        return torch.where(region, out, image), region[None].to(image.dtype)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({args})"


def _match_source(source: Tensor, image: Tensor) -> Tensor:
    """Returns ``source`` (C, H', W') on ``image``'s device/dtype, bilinearly resized to ``image``'s size."""
    if source.ndim != 3 or source.shape[0] != image.shape[0]:
        raise ValueError(f"source must be ({image.shape[0]}, H, W), got {tuple(source.shape)}")
    source = source.to(image.device, image.dtype)
    if source.shape[-2:] != image.shape[-2:]:
        source = F.interpolate(
            source[None], size=image.shape[-2:], mode="bilinear", align_corners=False, antialias=True
        )[0].clamp(0.0, 1.0)
    return source


# --------------------------------------------------------------------------------------------------------
# Perlin noise.
# --------------------------------------------------------------------------------------------------------
