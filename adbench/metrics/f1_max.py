"""Maximum F1 score over all thresholds."""

from __future__ import annotations

import torch
from torch import Tensor

from ._checks import has_both_classes, image_pair
from ._steps import Steps
from .ranking import ranking_steps


def f1_max_from_steps(steps: Steps) -> float:
    """Largest ``F1 = 2 TP / (TP + FP + P)`` over the thresholds of the steps.

    The maximum over all thresholds is reached at a threshold equal to a positive score (lowering the
    threshold to the next positive score adds no true positive and possibly false positives), and every
    such threshold ends a step that adds positives.
    """
    tp = torch.cumsum(steps.pos, 0)
    fp = torch.cumsum(steps.neg, 0)
    sel = steps.pos > 0
    f1 = 2 * tp[sel].double() / (tp[sel] + fp[sel] + steps.n_pos).double()
    return float(f1.max())


def f1_max(scores: Tensor, labels: Tensor, *, binned: int | None = None) -> float:
    """Best F1 score over all thresholds (as sklearn's ``precision_recall_curve``: every distinct score).

    Args:
        scores: (N,) raw scores, any range and sign (any shape, flattened, if labels match).
        labels: same shape, in {0, 1}.
        binned: None (exact, default) or the number B of thresholds evenly spaced between the min and max
            score. The binned value is the exact F1 at the best of those thresholds, so
            ``0 <= exact - binned <= max_k N_k / (P + N_k)`` over the bins k holding anomalous scores
            (N_k: normal scores in bin k, P: anomalous samples; see ``adbench.metrics.binned``).

    Returns:
        F1max in [0, 1]; nan (with a warning) when only one class is present.

    Raises:
        ValueError: NaN/inf scores, labels not in {0, 1}, or shapes that differ.
    """
    s, y = image_pair(scores, labels, "image_F1max")
    if not has_both_classes(y, "image_F1max", "image"):
        return float("nan")
    return f1_max_from_steps(ranking_steps(s, y, binned=binned))
