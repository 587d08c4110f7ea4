"""All headline metrics of one evaluation in a single call, sharing the sorting work."""

from __future__ import annotations

import warnings

import torch
from torch import Tensor

from ._checks import image_pair, one_class_message, pixel_pair
from .aupro import aupro_from_steps, check_fpr_limit, component_weights
from .auroc import auroc_from_steps
from .average_precision import average_precision_from_steps
from .f1_max import f1_max_from_steps
from .ranking import ranking_steps

METRIC_NAMES: tuple[str, ...] = ("image_AUROC", "pixel_AUROC", "pixel_AUPRO", "image_F1max", "pixel_AP")
"""The headline metric names used across the project (``compute_all`` adds ``"image_AP"``)."""


def compute_all(
    scores: Tensor,
    labels: Tensor,
    maps: Tensor | None = None,
    masks: Tensor | None = None,
    *,
    fpr_limit: float = 0.3,
    binned: int | None = None,
) -> dict[str, float]:
    """Computes every metric of ``METRIC_NAMES`` plus ``"image_AP"``.

    Image and pixel rankings are each built once and shared by the metrics of that level (the pixel curve
    is exact over all thresholds here, since pixel AUROC and AP need it anyway).

    Args:
        scores: (N,) raw image scores.
        labels: (N,) image labels in {0, 1}.
        maps: optional (N, 1, H, W) or (N, H, W) raw anomaly maps.
        masks: optional ground-truth masks of the same shape, in {0, 1}.
        fpr_limit: AUPRO integration limit.
        binned: None (exact) or the number of thresholds of the binned mode (see ``adbench.metrics.binned``).

    Returns:
        ``{"image_AUROC", "pixel_AUROC", "pixel_AUPRO", "image_F1max", "pixel_AP", "image_AP"}`` as floats.
        Pixel metrics are nan, silently, without maps and masks or when the masks hold no anomalous pixel
        (e.g. a dataset without masks). A level with a single class warns once and gives nan.

    Raises:
        ValueError: NaN/inf scores or maps, labels or masks not in {0, 1}, or shapes that differ.
    """
    nan = float("nan")
    out = dict.fromkeys((*METRIC_NAMES, "image_AP"), nan)
    limit = check_fpr_limit(fpr_limit)
    s, y = image_pair(scores, labels, "image metrics")
    n_pos = int(y.sum())
    if 0 < n_pos < y.numel():
        steps = ranking_steps(s, y, binned=binned)
        out["image_AUROC"] = auroc_from_steps(steps)
        out["image_F1max"] = f1_max_from_steps(steps)
        out["image_AP"] = average_precision_from_steps(steps)
    else:
        message = one_class_message("image_AUROC/F1max/AP", "image", n_pos, y.numel() - n_pos)
        warnings.warn(message, UserWarning, stacklevel=2)

    if maps is None or masks is None:
        return out
    m, g = pixel_pair(maps, masks, "pixel metrics")
    n_pos = int(torch.count_nonzero(g))
    if n_pos == 0:
        return out
    if n_pos == g.numel():
        message = one_class_message("pixel_AUROC/AUPRO/AP", "pixel", n_pos, 0)
        warnings.warn(message, UserWarning, stacklevel=2)
        return out
    weights, n_regions = component_weights(g)
    steps = ranking_steps(m.reshape(-1), g.reshape(-1), weights, binned=binned)
    out["pixel_AUROC"] = auroc_from_steps(steps)
    out["pixel_AP"] = average_precision_from_steps(steps)
    out["pixel_AUPRO"] = aupro_from_steps(steps, n_regions, limit)
    return out
