"""Area under the ROC curve, exactly as sklearn's ``roc_auc_score`` (ties count one half)."""

from __future__ import annotations

import torch
from torch import Tensor

from ._checks import has_both_classes, image_pair, pixel_pair
from ._steps import Steps
from .ranking import ranking_steps


def auroc_from_steps(steps: Steps) -> float:
    """AUROC of a ranking in step form (trapezoid rule over tie groups, computed in exact integers).

    Equals the Mann-Whitney statistic: the fraction of (positive, negative) pairs ranked correctly, a tie
    counting one half.
    """
    n_pos, n_neg = steps.n_pos, steps.n_neg
    tp_before = torch.cumsum(steps.pos, 0) - steps.pos
    twice_area = int((steps.neg * (2 * tp_before + steps.pos)).sum())
    return twice_area / (2 * n_pos * n_neg)


def image_auroc(scores: Tensor, labels: Tensor, *, binned: int | None = None) -> float:
    """Image-level AUROC.

    Args:
        scores: (N,) raw anomaly scores, any range and sign (higher = more anomalous).
        labels: (N,) in {0, 1}, 1 = anomalous.
        binned: None (exact, default) or the number B of thresholds evenly spaced between the min and max
            score. Binned AUROC counts every (anomalous, normal) pair whose two scores fall in the same
            bin as one half, where the exact value counts 0, 1/2 or 1, so
            ``|binned - exact| <= 1/2 * sum_k P_k N_k / (P N) <= 1/2 * min(max_k P_k / P, max_k N_k / N)``
            with P_k, N_k the anomalous / normal scores in bin k (see ``adbench.metrics.binned``).

    Returns:
        AUROC in [0, 1]; nan (with a warning) when only one class is present.

    Raises:
        ValueError: NaN/inf scores, labels not in {0, 1}, or shapes that differ.
    """
    s, y = image_pair(scores, labels, "image_AUROC")
    if not has_both_classes(y, "image_AUROC", "image"):
        return float("nan")
    return auroc_from_steps(ranking_steps(s, y, binned=binned))


def pixel_auroc(maps: Tensor, masks: Tensor, *, binned: int | None = None) -> float:
    """Pixel-level AUROC over all pixels of all images.

    Args:
        maps: (N, 1, H, W) or (N, H, W) raw anomaly maps.
        masks: ground truth of the same shape, in {0, 1}.
        binned: None (exact) or number of thresholds; same error bound as ``image_auroc`` with pixels.

    Returns:
        AUROC in [0, 1]; nan (with a warning) when the masks hold no anomalous or no normal pixel.

    Raises:
        ValueError: NaN/inf in the maps, masks not in {0, 1}, or shapes that differ.
    """
    m, g = pixel_pair(maps, masks, "pixel_AUROC")
    if not has_both_classes(g, "pixel_AUROC", "pixel"):
        return float("nan")
    return auroc_from_steps(ranking_steps(m.reshape(-1), g.reshape(-1), binned=binned))
