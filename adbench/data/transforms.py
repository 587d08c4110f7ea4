"""Joint image/mask transforms: resize, optional center crop, backbone normalization, augmentation."""

from __future__ import annotations

from collections.abc import Sequence

import albumentations as A
import numpy as np
import torch
from albumentations.pytorch import ToTensorV2

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def as_hw(size: int | Sequence[int]) -> tuple[int, int]:
    """``256`` -> (256, 256); ``(h, w)`` unchanged."""
    if isinstance(size, int):
        return size, size
    height, width = size
    return int(height), int(width)


class ImageMaskTransform:
    """Resize, optionally center crop, augment (train only) and normalize an image with its mask.

    Args:
        image_size: size after resizing, int or (height, width).
        center_crop: optional crop size applied after the resize (e.g. 224 after 256, as DSR evaluates).
        mean: per-channel normalization mean (the backbone's).
        std: per-channel normalization std (the backbone's).
        augmentations: albumentations transforms applied before resizing (train split only).
    """

    def __init__(
        self,
        image_size: int | Sequence[int],
        center_crop: int | Sequence[int] | None = None,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        augmentations: Sequence[A.BasicTransform] = (),
    ) -> None:
        height, width = as_hw(image_size)
        steps: list = [*augmentations, A.Resize(height, width)]
        if center_crop is not None:
            steps.append(A.CenterCrop(*as_hw(center_crop)))
        steps += [A.Normalize(mean=tuple(mean), std=tuple(std), max_pixel_value=255.0), ToTensorV2()]
        self.pipeline = A.Compose(steps)

    def __call__(self, image: np.ndarray, mask: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Args: image uint8 (H, W, 3), mask float32 (H, W). Returns: (3, h, w) float32, (1, h, w) {0, 1}."""
        out = self.pipeline(image=image, mask=mask)
        mask_tensor = torch.as_tensor(out["mask"], dtype=torch.float32)
        return out["image"].float(), (mask_tensor > 0.5).float().unsqueeze(0)
