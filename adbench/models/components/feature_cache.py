"""Caching a frozen backbone's features per training image, for training without augmentation."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor


class FeatureCache:
    """Remembers frozen features by image path, so each training image passes the backbone once per fit.

    Only valid when the same path always gives the same input (no random augmentation); the owner checks
    that. Features are kept on the CPU in ``dtype`` (float32 by default, so cached training is exact;
    720x16x16 EfficientNet-B4 features take 720 KB per image, float16 halves that).

    Args:
        dtype: storage dtype.
    """

    def __init__(self, dtype: torch.dtype = torch.float32) -> None:
        self.dtype = dtype
        self._store: dict[str, Tensor] = {}

    def __len__(self) -> int:
        return len(self._store)

    def clear(self) -> None:
        self._store.clear()

    def get(self, paths: Sequence[str], image: Tensor, extract: Callable[[Tensor], Tensor]) -> Tensor:
        """Features of a batch: cached ones are reused, the others extracted (only for the missing images).

        Args:
            paths: B unique image names.
            image: (B, 3, H, W) the batch.
            extract: maps (b, 3, H, W) images to (b, C, h, w) features.

        Returns:
            (B, C, h, w) features on ``image``'s device.
        """
        missing = [i for i, p in enumerate(paths) if p not in self._store]
        if missing:
            features = extract(image[missing])
            for i, feature in zip(missing, features, strict=True):
                self._store[paths[i]] = feature.detach().to("cpu", self.dtype)
        stacked = torch.stack([self._store[p] for p in paths])
        return stacked.to(image.device, torch.float32)
