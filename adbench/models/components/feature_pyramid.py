"""Combining multi-scale backbone features into one map."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

#: How maps are brought to the common grid (see :func:`resize_to`).
FeatureResize = Literal["area", "bilinear_corners"]
FEATURE_RESIZES = ("area", "bilinear_corners")
#: The mode of checkpoints written before the choice existed (their features were point-sampled).
LEGACY_FEATURE_RESIZE: FeatureResize = "bilinear_corners"


def resize_to(feature: Tensor, size: tuple[int, int], mode: FeatureResize = "area") -> Tensor:
    """Brings one map to ``size``.

    ``area``: a finer map is averaged over the cells of the coarser grid (adaptive average pooling), so the
    coarse cell holds the mean of what it covers instead of one aliased sample; a coarser map is upsampled
    bilinearly with ``align_corners=False``, the convention the anomaly map is upsampled with, so that grid
    cells and image pixels stay registered. ``bilinear_corners``: bilinear with ``align_corners=True`` in both
    directions (point sampling when downsampling; adbench before issue 21, as UniAD's code), kept so that older
    checkpoints test as they were trained.

    Args:
        feature: (B, C, H, W).
        size: (h, w).
        mode: ``area`` or ``bilinear_corners``.

    Returns:
        (B, C, h, w).
    """
    if mode == "bilinear_corners":
        return F.interpolate(feature, size=size, mode="bilinear", align_corners=True)
    height, width = feature.shape[-2:]
    if (height, width) == tuple(size):
        return feature
    if height >= size[0] and width >= size[1]:
        return F.adaptive_avg_pool2d(feature, size)
    return F.interpolate(feature, size=size, mode="bilinear", align_corners=False)


def resize_and_concat(
    features: Sequence[Tensor], size: int | tuple[int, int], mode: FeatureResize = "area"
) -> Tensor:
    """Resizes every map to ``size`` (:func:`resize_to`) and concatenates them along channels.

    Args:
        features: maps (B, C_i, H_i, W_i).
        size: common output size.
        mode: ``area`` (default) or ``bilinear_corners`` (the earlier point sampling).

    Returns:
        (B, sum C_i, size_h, size_w).
    """
    hw = (size, size) if isinstance(size, int) else tuple(size)
    return torch.cat([resize_to(f, hw, mode) for f in features], dim=1)
