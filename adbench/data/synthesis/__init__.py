"""Synthetic anomaly generators for training anomaly detectors on normal images only.

Every generator is configured in ``__init__`` with plain types and called as
``gen(image (3, H, W) in [0, 1], generator: torch.Generator, source=None) -> (image, mask (1, H, W))``;
all randomness comes from the passed generator.
"""

from adbench.data.synthesis.base import AnomalyGenerator
from adbench.data.synthesis.confetti import ConfettiNoise
from adbench.data.synthesis.cutpaste import CutPaste, color_jitter
from adbench.data.synthesis.fractal import FractalAnomaly, fractal_mask, random_ifs
from adbench.data.synthesis.perlin import (
    PerlinSmudge,
    perlin_mask,
    perlin_noise_2d,
    rotated_perlin_noise_2d,
)

__all__ = [
    "AnomalyGenerator",
    "ConfettiNoise",
    "CutPaste",
    "FractalAnomaly",
    "PerlinSmudge",
    "color_jitter",
    "fractal_mask",
    "perlin_mask",
    "perlin_noise_2d",
    "random_ifs",
    "rotated_perlin_noise_2d",
]
