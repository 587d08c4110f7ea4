"""Average precision, exactly as sklearn's ``average_precision_score`` (step-wise sum, ties grouped)."""

from __future__ import annotations

import torch
from torch import Tensor

from ._checks import has_both_classes, image_pair, pixel_pair
from ._steps import Steps
from .ranking import ranking_steps


def average_precision_from_steps(steps: Steps) -> float:
    """AP = sum over tie groups holding positives of (recall gained) x (precision at that threshold)."""
    tp = torch.cumsum(steps.pos, 0)
    fp = torch.cumsum(steps.neg, 0)
    sel = steps.pos > 0
    precision = tp[sel].double() / (tp[sel] + fp[sel]).double()
    return float((steps.pos[sel].double() * precision).sum()) / steps.n_pos


def average_precision(scores: Tensor, labels: Tensor, *, binned: int | None = None) -> float:
    """Average precision of scores against binary labels (images, or any flattened scores).

    Args:
        scores: (N,) raw scores, any range and sign (any shape, flattened, if labels match).
        labels: same shape, in {0, 1}.
        binned: None (exact, default) or the number B of thresholds evenly spaced between the min and max
            score. Binned AP sums the exact precision at each threshold t_k times the recall gained in
            bin k. A positive in bin k would get the precision at its own score instead, which differs by
            at most ``min(1, M_k / (M_>k + 1))`` (M_k: scores in bin k, M_>k: scores in higher bins), so
            ``|binned - exact| <= (1/P) * sum_k P_k * min(1, M_k / (M_>k + 1))``.

    Returns:
        AP in [0, 1]; nan (with a warning) when only one class is present. Constant scores give the
        positive fraction.

    Raises:
        ValueError: NaN/inf scores, labels not in {0, 1}, or shapes that differ.
    """
    s, y = image_pair(scores, labels, "image_AP")
    if not has_both_classes(y, "image_AP", "image"):
        return float("nan")
    return average_precision_from_steps(ranking_steps(s, y, binned=binned))


def pixel_average_precision(maps: Tensor, masks: Tensor, *, binned: int | None = None) -> float:
    """Pixel-level average precision over all pixels of all images.

    Args:
        maps: (N, 1, H, W) or (N, H, W) raw anomaly maps.
        masks: ground truth of the same shape, in {0, 1}.
        binned: None (exact) or number of thresholds; error bound as in ``average_precision``.

    Returns:
        AP in [0, 1]; nan (with a warning) when the masks hold no anomalous or no normal pixel.

    Raises:
        ValueError: NaN/inf in the maps, masks not in {0, 1}, or shapes that differ.
    """
    m, g = pixel_pair(maps, masks, "pixel_AP")
    if not has_both_classes(g, "pixel_AP", "pixel"):
        return float("nan")
    return average_precision_from_steps(ranking_steps(m.reshape(-1), g.reshape(-1), binned=binned))
