"""Applying an image-space anomaly generator to a normalized training batch."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from adbench.data.synthesis import AnomalyGenerator


class BatchSynthesizer:
    """Turns normal images of a normalized batch into synthetic anomalies with pixel masks.

    Generators work on images in [0, 1]; the batch is de-normalized, altered image by image, and normalized
    again. Each image takes fill content from the next image of the batch (``source``). Randomness comes
    from one seeded ``torch.Generator``, so a fit with the same seed sees the same anomalies.

    Args:
        generator: the anomaly generator (confetti, fractal, Perlin smudge, cut-paste).
        mean: the batch's normalization mean.
        std: the batch's normalization std.
        seed: seed of the generator's random stream.
    """

    def __init__(
        self, generator: AnomalyGenerator, mean: Sequence[float], std: Sequence[float], seed: int = 0
    ) -> None:
        self.generator = generator
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
        self.random = torch.Generator().manual_seed(seed)

    def __call__(self, image: Tensor) -> tuple[Tensor, Tensor]:
        """Args: image (B, 3, H, W) normalized. Returns: altered images (B, 3, H, W), masks (B, 1, H, W)."""
        mean, std = self.mean.to(image.device), self.std.to(image.device)
        pixels = (image.float() * std + mean).clamp(0, 1).cpu()
        altered, masks = [], []
        for i in range(pixels.shape[0]):
            source = pixels[(i + 1) % pixels.shape[0]] if pixels.shape[0] > 1 else None
            out, mask = self.generator(pixels[i], self.random, source)
            altered.append(out)
            masks.append(mask)
        result = (torch.stack(altered).to(image.device) - mean) / std
        return result.to(image.dtype), torch.stack(masks).to(image.device)
