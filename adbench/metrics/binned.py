"""Optional binned mode: histograms over evenly spaced thresholds instead of every distinct score.

With ``binned=B`` the thresholds are ``t_k = min + k * (max - min) / (B - 1)``, k = 0..B-1 (float64; min and
max over all scores of the call). Bin k holds the scores with ``t_k <= s < t_{k+1}``; the last bin holds the
scores equal to the maximum. The curve points at the thresholds ``t_k`` are exact; between them the
binned curve is a straight line (one tie group per bin). Equivalently, a binned metric is the exact metric
of the scores rounded down to their bin's threshold. Error bounds are given in each metric's docstring.

Memory is bounded: scores are bucketized in chunks and only (B,) histograms are kept.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ._steps import Steps

_CHUNK = 1 << 22


def check_bins(binned: int) -> int:
    """Validates the ``binned`` argument (an int >= 2)."""
    if isinstance(binned, bool) or not isinstance(binned, int) or binned < 2:
        raise ValueError(f"binned must be None (exact) or an int >= 2, got {binned!r}.")
    return binned


def bin_thresholds(scores: Tensor, bins: int) -> Tensor:
    """The (bins,) float64 thresholds evenly spaced from ``scores.min()`` to ``scores.max()``."""
    lo_t, hi_t = torch.aminmax(scores.reshape(-1))
    lo, hi = float(lo_t), float(hi_t)
    thresholds = torch.linspace(lo, hi, bins, dtype=torch.float64, device=scores.device)
    thresholds[0], thresholds[-1] = lo, hi
    return thresholds


def bin_index(values: Tensor, thresholds: Tensor) -> Tensor:
    """Bin k of each value: the largest k with ``thresholds[k] <= value`` (values >= thresholds[0])."""
    return torch.bucketize(values.to(torch.float64), thresholds, right=True) - 1


def binned_steps(scores: Tensor, positive: Tensor, bins: int, weights: Tensor | None = None) -> Steps:
    """Histogram steps of a score ranking, one per bin from the highest bin.

    Args:
        scores: (n,) finite floating scores.
        positive: (n,) bool labels.
        bins: number of thresholds (>= 2).
        weights: optional (P,) positive weights in the order of ``scores[positive]``.

    Returns:
        ``Steps`` of length ``bins`` (length 1 when all scores are equal).
    """
    scores = scores.reshape(-1)
    positive = positive.reshape(-1)
    pos_vals = scores[positive]
    w = None if weights is None else weights.to(torch.float64)
    lo_t, hi_t = torch.aminmax(scores)
    if float(lo_t) == float(hi_t):
        n_pos = pos_vals.numel()
        neg = torch.tensor([scores.numel() - n_pos], device=scores.device)
        pos = torch.tensor([n_pos], device=scores.device)
        weight = None if w is None else w.sum().reshape(1)
        return Steps(neg=neg, pos=pos, weight=weight)
    thresholds = bin_thresholds(scores, bins)
    hist = torch.zeros(bins, dtype=torch.int64, device=scores.device)
    for chunk in scores.split(_CHUNK):
        hist += torch.bincount(bin_index(chunk, thresholds), minlength=bins)
    k_pos = bin_index(pos_vals, thresholds)
    pos = torch.bincount(k_pos, minlength=bins)
    weight = None if w is None else torch.bincount(k_pos, weights=w, minlength=bins).flip(0)
    return Steps(neg=(hist - pos).flip(0), pos=pos.flip(0), weight=weight)
