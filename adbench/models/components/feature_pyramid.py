"""Combining multi-scale backbone features into one map."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor


def resize_and_concat(features: Sequence[Tensor], size: int | tuple[int, int]) -> Tensor:
    """Bilinearly resizes every map to ``size`` and concatenates them along channels.

    Args:
        features: maps (B, C_i, H_i, W_i).
        size: common output size.

    Returns:
        (B, sum C_i, size_h, size_w).
    """
    return torch.cat(
        [F.interpolate(f, size=size, mode="bilinear", align_corners=True) for f in features], dim=1
    )
