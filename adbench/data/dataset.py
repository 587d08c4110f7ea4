"""A map-style dataset over (image, label, mask) samples, shared by every datamodule."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from adbench.data.image_io import image_size, read_mask, read_rgb
from adbench.errors import DataError


@dataclass(frozen=True)
class Sample:
    """One image on disk.

    Attributes:
        image_path: the image file.
        label: 0 normal, 1 anomalous.
        mask_path: its ground-truth mask, or None (all-zero mask).
        defect: the defect type ("good" for normal images).
    """

    image_path: Path
    label: int
    mask_path: Path | None = None
    defect: str = "good"


Transform = Callable[[np.ndarray, np.ndarray], tuple[torch.Tensor, torch.Tensor]]


def check_mask_sizes(samples: Sequence[Sample]) -> None:
    """Raises DataError when a mask's size differs from its image's (reads file headers only)."""
    for sample in samples:
        if sample.mask_path is None:
            continue
        if image_size(sample.mask_path) != image_size(sample.image_path):
            raise DataError(
                f"mask {sample.mask_path} is {image_size(sample.mask_path)} but image {sample.image_path} is "
                f"{image_size(sample.image_path)} (width, height); masks must match their images"
            )


class AnomalyDataset(Dataset):
    """Reads samples and applies a joint image/mask transform.

    Args:
        samples: the images of this split.
        transform: maps (image uint8 (H, W, 3), mask float32 (H, W)) to (image (3, h, w), mask (1, h, w)).
    """

    def __init__(self, samples: Sequence[Sample], transform: Transform) -> None:
        self.samples = list(samples)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict:
        sample = self.samples[index]
        image = read_rgb(sample.image_path)
        if sample.mask_path is not None:
            mask = read_mask(sample.mask_path)
            if mask.shape != image.shape[:2]:
                raise DataError(
                    f"mask {sample.mask_path} is {mask.shape[::-1]} but image {sample.image_path} is "
                    f"{image.shape[1::-1]} (width, height); masks must match their images"
                )
        else:
            mask = np.zeros(image.shape[:2], dtype=np.float32)
        image_tensor, mask_tensor = self.transform(image, mask)
        return {
            "image": image_tensor,
            "label": sample.label,
            "mask": mask_tensor,
            "path": str(sample.image_path),
            "index": index,
        }
