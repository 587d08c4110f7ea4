"""The Batch contract every datamodule yields and every model consumes."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

import torch
from torch import Tensor


@dataclass
class Batch:
    """One batch of images with their labels and ground truth.

    Fields read as attributes or keys: ``batch.image`` and ``batch["image"]`` are the same tensor.
    (Not a ``Mapping`` subclass on purpose: Lightning moves dataclasses field by field.)

    Attributes:
        image: (B, 3, H, W) float32, normalized for the backbone.
        label: (B,) long, 0 normal / 1 anomalous.
        mask: (B, 1, H, W) float32 in {0, 1}; zeros for normal images and datasets without masks.
        path: B file paths (or other unique names).
        index: (B,) long, unique id of each sample in its split (drops DDP padding duplicates).
    """

    image: Tensor
    label: Tensor
    mask: Tensor
    path: list[str] = field(default_factory=list)
    index: Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.long))

    def __getitem__(self, key: str) -> Any:
        if key not in self.keys():
            raise KeyError(key)
        return getattr(self, key)

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def keys(self) -> list[str]:
        return [f.name for f in fields(self)]

    @property
    def batch_size(self) -> int:
        return int(self.image.shape[0])

    def to(self, device: torch.device | str) -> Batch:
        """Returns a copy with every tensor moved to ``device``."""
        return Batch(
            image=self.image.to(device),
            label=self.label.to(device),
            mask=self.mask.to(device),
            path=list(self.path),
            index=self.index.to(device),
        )

    @staticmethod
    def collate(samples: list[Mapping[str, Any]]) -> Batch:
        """Stacks per-sample dicts (image (3,H,W), label int, mask (1,H,W), path, index) into a Batch."""
        return Batch(
            image=torch.stack([s["image"] for s in samples]),
            label=torch.as_tensor([int(s["label"]) for s in samples], dtype=torch.long),
            mask=torch.stack([s["mask"] for s in samples]).float(),
            path=[str(s["path"]) for s in samples],
            index=torch.as_tensor([int(s["index"]) for s in samples], dtype=torch.long),
        )
