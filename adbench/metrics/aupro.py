"""AUPRO: normalized area under the per-region-overlap curve up to a false-positive-rate limit (MVTec AD)."""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy import ndimage
from torch import Tensor

from ._checks import has_both_classes, pixel_pair
from ._steps import Steps
from .ranking import ranking_steps


def component_weights(masks: Tensor) -> tuple[Tensor, int]:
    """Labels the defect regions of each mask and weights each defect pixel by 1 / its region's size.

    Regions are 8-connected components within one image (never across images), labelled with
    ``scipy.ndimage.label`` on CPU; only the masks travel to the CPU.

    Args:
        masks: (N, H, W) bool ground truth.

    Returns:
        weights: (P,) float64 on the device of ``masks``, one per defect pixel in the order of
            ``masks[masks]`` (row-major over images, rows, columns).
        n_regions: number of connected components over all images.
    """
    m = masks.detach().cpu().numpy()
    sub = m[m.reshape(m.shape[0], -1).any(1)]
    structure = np.zeros((3, 3, 3), dtype=bool)
    structure[1] = True
    labels, n_regions = ndimage.label(sub, structure=structure)
    region = labels[sub]
    sizes = np.bincount(region, minlength=n_regions + 1)
    weights = 1.0 / sizes[region].astype(np.float64)
    return torch.from_numpy(weights).to(masks.device), int(n_regions)


def aupro_from_steps(steps: Steps, n_regions: int, fpr_limit: float) -> float:
    """Normalized area under the PRO curve for FPR in [0, fpr_limit].

    The curve starts at (0, 0) and goes through (FPR, PRO) after every step; it is integrated with the
    trapezoid rule, the last segment cut at ``fpr_limit`` by linear interpolation, and divided by
    ``fpr_limit``.

    Args:
        steps: ``Steps`` whose ``weight`` holds the per-pixel weights ``1 / region size``.
        n_regions: number of defect regions (the PRO is the summed weight divided by it).
        fpr_limit: upper integration limit in (0, 1].
    """
    if steps.weight is None:
        raise ValueError("pixel_AUPRO: the steps carry no region weights.")
    limit = float(fpr_limit)
    fpr = torch.cumsum(steps.neg, 0).double() / steps.n_neg
    pro = (torch.cumsum(steps.weight.double(), 0) / n_regions).clamp(max=1.0)
    x = torch.cat([fpr.new_zeros(1), fpr])
    y = torch.cat([pro.new_zeros(1), pro])
    x0, x1, y0, y1 = x[:-1], x[1:], y[:-1], y[1:]
    crossing = (x0 < limit) & (x1 > limit)
    frac = torch.where(crossing, (limit - x0) / torch.where(crossing, x1 - x0, 1.0), 1.0)
    y_end = torch.where(crossing, y0 + (y1 - y0) * frac, y1)
    width = x1.clamp(max=limit) - x0.clamp(max=limit)
    area = float((width * (y0 + y_end)).sum()) / 2
    return min(max(area / limit, 0.0), 1.0)


def check_fpr_limit(fpr_limit: float) -> float:
    """Validates the FPR integration limit (a number in (0, 1])."""
    value = float(fpr_limit)
    if not (math.isfinite(value) and 0 < value <= 1):
        raise ValueError(f"pixel_AUPRO: fpr_limit must be in (0, 1], got {fpr_limit!r}.")
    return value


def aupro(maps: Tensor, masks: Tensor, fpr_limit: float = 0.3, *, binned: int | None = None) -> float:
    """Area under the per-region-overlap curve up to ``fpr_limit``, divided by ``fpr_limit`` (MVTec AD).

    For each threshold t (every distinct score), a pixel is anomalous when its score >= t. The PRO is the
    mean over all defect regions (8-connected components of each ground-truth mask, counted per image over
    all images) of the fraction of the region's pixels that are anomalous; the FPR is the fraction of normal
    pixels (mask 0, over all images) that are anomalous. PRO is integrated over FPR in [0, fpr_limit].

    Cost: only the normal pixels in the top score bins holding just over ``fpr_limit`` of them are sorted,
    plus the defect pixels (about 1 s for 500 maps of 256 x 256 on an idle 2-core CPU).

    Args:
        maps: (N, 1, H, W) or (N, H, W) raw anomaly maps, any range and sign.
        masks: ground truth of the same shape, in {0, 1}.
        fpr_limit: integration limit in (0, 1].
        binned: None (exact, default) or the number B of thresholds evenly spaced between the min and max
            score. The binned curve passes through the exact (FPR, PRO) points at those thresholds and is
            straight in between, where the exact curve stays in the box spanned by bin k's FPR gain
            dF_k = N_k / N and PRO gain dPRO_k, so
            ``|binned - exact| <= (1 / fpr_limit) * sum_k w_k * dPRO_k``
            ``<= min(max_k dPRO_k, max_k dF_k / fpr_limit)``, with w_k the width of bin k's FPR interval
            inside [0, fpr_limit].

    Returns:
        AUPRO in [0, 1]; nan (with a warning) when the masks hold no defect pixel or no normal pixel.

    Raises:
        ValueError: NaN/inf in the maps, masks not in {0, 1}, shapes that differ, or a bad ``fpr_limit``.
    """
    limit = check_fpr_limit(fpr_limit)
    m, g = pixel_pair(maps, masks, "pixel_AUPRO")
    if not has_both_classes(g, "pixel_AUPRO", "pixel"):
        return float("nan")
    weights, n_regions = component_weights(g)
    steps = ranking_steps(m.reshape(-1), g.reshape(-1), weights, binned=binned, neg_fraction=limit)
    return aupro_from_steps(steps, n_regions, limit)
