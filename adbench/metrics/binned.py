"""Optional binned mode: histograms over evenly spaced thresholds instead of every distinct score.

With ``binned=B`` the thresholds are ``t_k = min + k * (max - min) / (B - 1)``, k = 0..B-1 (min and max over
all scores of the call): score s goes to bin ``floor((s - min) * (B - 1) / (max - min))``, computed in the
scores' dtype (so the edges are the t_k up to that rounding; the bins are intervals in any case). The curve
points at the bin edges are exact; between them the binned curve is a straight line (each bin is one tie
group). Equivalently, a binned metric is the exact metric of the scores replaced by their bin ids. The
error bounds in the metrics' docstrings are stated in terms of the bin contents (P_k anomalous and N_k
normal scores in bin k) and hold for these bins exactly.

Memory is bounded: scores are bucketized in chunks and only (B,) histograms are kept.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ._steps import Steps

_CHUNK = 1 << 22


def check_bins(binned: int) -> int:
    """Validates the ``binned`` argument (an int >= 2)."""
    if isinstance(binned, bool) or not isinstance(binned, int) or binned < 2:
        raise ValueError(f"binned must be None (exact) or an int >= 2, got {binned!r}.")
    return binned


def score_range(scores: Tensor) -> tuple[float, float]:
    """(min, max) of the scores as Python floats."""
    lo, hi = torch.aminmax(scores.reshape(-1))
    return float(lo), float(hi)


def bin_ids(values: Tensor, lo: float, hi: float, bins: int) -> Tensor:
    """Bin of each value: ``floor((value - lo) * (bins - 1) / (hi - lo))`` clamped to [0, bins - 1].

    Computed with the float operations of the values' dtype, so the map is monotone non-decreasing and a
    score and its equal always share a bin; the bin edges are the thresholds ``lo + k (hi - lo) / (bins - 1)``
    up to that rounding. Requires ``hi > lo``.

    Args:
        values: (n,) floating scores in [lo, hi].
        lo: minimum score.
        hi: maximum score.
        bins: number of bins.

    Returns:
        (n,) int32 bin ids.
    """
    half = not math.isfinite(hi - lo)
    span = hi / 2 - lo / 2 if half else hi - lo
    offset = (values / 2 - lo / 2) if half else (values - lo)
    return (offset * ((bins - 1) / span)).clamp_(0, bins - 1).to(torch.int32)


def _sum_per_bin(ids: Tensor, weights: Tensor, counts: Tensor) -> Tensor:
    """Sum of the weights in each bin, by sorting (deterministic, unlike a weighted bincount on CUDA).

    Args:
        ids: (P,) bin ids.
        weights: (P,) float64 weights.
        counts: (bins,) number of ids in each bin.
    """
    order = torch.argsort(ids, stable=True)
    cum = torch.cat([weights.new_zeros(1), torch.cumsum(weights[order], 0)])
    return torch.diff(cum[torch.cumsum(counts, 0)], prepend=cum[:1])


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
    lo, hi = score_range(scores)
    if lo == hi:
        n_pos = pos_vals.numel()
        neg = torch.tensor([scores.numel() - n_pos], device=scores.device)
        pos = torch.tensor([n_pos], device=scores.device)
        weight = None if w is None else w.sum().reshape(1)
        return Steps(neg=neg, pos=pos, weight=weight)
    hist = torch.zeros(bins, dtype=torch.int64, device=scores.device)
    for chunk in scores.split(_CHUNK):
        hist += torch.bincount(bin_ids(chunk, lo, hi, bins), minlength=bins)
    k_pos = bin_ids(pos_vals, lo, hi, bins)
    pos = torch.bincount(k_pos, minlength=bins)
    weight = None if w is None else _sum_per_bin(k_pos, w, pos).flip(0)
    return Steps(neg=(hist - pos).flip(0), pos=pos.flip(0), weight=weight)
