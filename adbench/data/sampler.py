"""A shuffling sampler whose order depends only on (seed, epoch), so a resumed fit sees the same batches."""

from __future__ import annotations

from collections.abc import Iterator, Sized

import torch
from torch.utils.data import Sampler


class EpochSeededSampler(Sampler[int]):
    """Random permutation per epoch from ``seed + epoch`` (Lightning calls ``set_epoch`` every epoch).

    Unlike ``RandomSampler``, it draws nothing from the global random state, so a fit resumed from a
    checkpoint shuffles its remaining epochs exactly as an uninterrupted fit does. Under DDP, Lightning
    replaces it with ``DistributedSampler``, which is seeded the same way.

    Args:
        data_source: the dataset (only its length is used).
        seed: base seed of the permutations.
    """

    def __init__(self, data_source: Sized, seed: int = 0) -> None:
        self.data_source = data_source
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.data_source)

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return iter(torch.randperm(len(self.data_source), generator=generator).tolist())
