"""Exact sorted-threshold curves (ROC, precision-recall, PRO) in step form, with sklearn's tie handling.

Every distinct score is a threshold and a sample is called anomalous when ``score >= threshold``. Only the
positives need their own thresholds: between two consecutive distinct positive scores the curves move
through negatives only, which adds collinear points and changes no metric. So the positives are sorted
(usually the small class: defect pixels), the scores are sorted as a pool, and binary searches of the
positive levels in the pool count, for each level, the negatives strictly above it and equal to it.

For AUPRO only the curve up to a false-positive rate limit matters. ``neg_fraction`` then restricts the
pool to the scores above a cut value, found with a histogram and checked exactly, that leaves just over
that fraction of the negatives in the pool, so that the sort stays small (about a third of the pixels for
``fpr_limit=0.3``).

Everything is vectorized torch code that runs on CPU and CUDA alike. The one device-specific detail:
sorting a large CPU float tensor goes through numpy's SIMD sort, about 3x faster than ``torch.sort``.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from ._steps import Steps
from .binned import bin_ids, binned_steps, check_bins, score_range

_CUT_BINS = 4096
_CHUNK = 1 << 22


def sort_values(values: Tensor) -> Tensor:
    """Sorts a 1-D tensor in ascending order (values only, no indices).

    Args:
        values: (n,) floating tensor without NaN.

    Returns:
        (n,) sorted copy on the same device.
    """
    if values.device.type == "cpu" and values.dtype in (torch.float32, torch.float64):
        return torch.from_numpy(np.sort(values.detach().numpy()))
    return torch.sort(values).values


def _level_weights(pos_vals: Tensor, weights: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Sorts the positives and sums their weights per distinct value (deterministic on every device)."""
    order = torch.argsort(pos_vals, stable=True)
    levels, counts = torch.unique_consecutive(pos_vals[order], return_counts=True)
    cum = torch.cumsum(weights.to(torch.float64)[order], 0)
    at_end = cum[torch.cumsum(counts, 0) - 1]
    return levels, counts, torch.diff(at_end, prepend=at_end.new_zeros(1))


def _full_pool(scores: Tensor, levels_desc: Tensor) -> tuple[Tensor, int]:
    """Sorted scores >= the lowest positive score (lower negatives only matter by their count)."""
    if levels_desc.numel():
        keep = scores >= levels_desc[-1]
        if int(torch.count_nonzero(keep)) < 0.8 * scores.numel():
            return sort_values(scores[keep]), levels_desc.numel()
    return sort_values(scores), levels_desc.numel()


def _pool(
    scores: Tensor, pos_vals: Tensor, levels_desc: Tensor, n_neg: int, neg_fraction: float | None
) -> tuple[Tensor, int]:
    """Sorted pool of scores and the number of leading (highest) positive levels it fully covers.

    Every score >= a covered level is in the pool, so counts in the pool are global counts. Without
    ``neg_fraction`` all levels are covered. With it, the pool is every score >= a cut value found with a
    histogram (one bin of margin, so float rounding cannot matter) and checked to leave more than
    ``neg_fraction * n_neg`` negatives in the pool.
    """
    if neg_fraction is None or n_neg == 0 or neg_fraction >= 1:
        return _full_pool(scores, levels_desc)
    lo, hi = score_range(scores)
    span = hi - lo
    if not (span > 0 and math.isfinite(span)):
        return _full_pool(scores, levels_desc)
    need = min(n_neg, math.floor(neg_fraction * n_neg) + 1)
    hist = torch.zeros(_CUT_BINS, dtype=torch.int64, device=scores.device)
    for chunk in scores.split(_CHUNK):  # bincount without weights: deterministic on CUDA too
        hist += torch.bincount(bin_ids(chunk, lo, hi, _CUT_BINS), minlength=_CUT_BINS)
    hist -= torch.bincount(bin_ids(pos_vals, lo, hi, _CUT_BINS), minlength=_CUT_BINS)
    neg_at_or_above = hist.flip(0).cumsum(0).flip(0)
    enough = torch.nonzero(neg_at_or_above >= need)
    cut_bin = int(enough.max()) - 1 if enough.numel() else 0
    if cut_bin <= 0:
        return _full_pool(scores, levels_desc)
    cut = torch.tensor(lo + cut_bin * (span / (_CUT_BINS - 1)), dtype=scores.dtype, device=scores.device)
    pool = scores[scores >= cut]
    pool_pos = int(torch.count_nonzero(pos_vals >= cut))
    if pool.numel() - pool_pos < need:  # cannot happen with one bin of margin; stay exact anyway
        return _full_pool(scores, levels_desc)
    return sort_values(pool), int(torch.count_nonzero(levels_desc >= cut))


def exact_steps(
    scores: Tensor, positive: Tensor, weights: Tensor | None = None, neg_fraction: float | None = None
) -> Steps:
    """Exact tie-grouped curve of a score ranking, in step form.

    Args:
        scores: (n,) finite floating scores (higher = more anomalous).
        positive: (n,) bool, True for anomalous samples / pixels.
        weights: optional (P,) weights of the positives, in the order of ``scores[positive]``.
        neg_fraction: if given (AUPRO), the steps are exact only until more than this fraction of the
            negatives has entered; the remaining samples form one final lumped step.

    Returns:
        ``Steps`` with, for each distinct positive score from the highest: one step of the negatives strictly
        between it and the previous level, then one step of the tie group at that score. Two final steps
        hold the negatives below the lowest covered level and the uncovered remainder.
    """
    scores = scores.reshape(-1)
    positive = positive.reshape(-1)
    device = scores.device
    pos_vals = scores[positive]
    n_pos = pos_vals.numel()
    n_neg = scores.numel() - n_pos
    if weights is None:
        levels, counts = torch.unique_consecutive(sort_values(pos_vals), return_counts=True)
        level_w = None
    else:
        levels, counts, level_w = _level_weights(pos_vals, weights)
    levels, counts = levels.flip(0), counts.flip(0)
    pool, covered = _pool(scores, pos_vals, levels, n_neg, neg_fraction)

    lv, cnt = levels[:covered], counts[:covered]
    size = pool.numel()
    ge_all = size - torch.searchsorted(pool, lv, right=False)
    gt_all = size - torch.searchsorted(pool, lv, right=True)
    pos_ge = torch.cumsum(cnt, 0)
    neg_ge = ge_all - pos_ge
    neg_gt = gt_all - (pos_ge - cnt)
    prev_ge = torch.cat([neg_ge.new_zeros(1), neg_ge[:-1]])
    pos_covered = int(pos_ge[-1]) if covered else 0
    last_ge = int(neg_ge[-1]) if covered else 0
    pool_neg = size - pos_covered

    zeros = torch.zeros_like(cnt)
    tail = torch.tensor([pool_neg - last_ge, n_neg - pool_neg], dtype=torch.int64, device=device)
    neg = torch.cat([torch.stack([neg_gt - prev_ge, neg_ge - neg_gt], 1).reshape(-1), tail])
    pos_tail = torch.tensor([0, n_pos - pos_covered], dtype=torch.int64, device=device)
    pos = torch.cat([torch.stack([zeros, cnt], 1).reshape(-1), pos_tail])
    weight = None
    if level_w is not None:
        level_w = level_w.flip(0)
        w_top = level_w[:covered]
        w_tail = torch.stack([level_w.new_zeros(()), level_w[covered:].sum()])
        weight = torch.cat([torch.stack([torch.zeros_like(w_top), w_top], 1).reshape(-1), w_tail])
    return Steps(neg=neg, pos=pos, weight=weight)


def ranking_steps(
    scores: Tensor,
    positive: Tensor,
    weights: Tensor | None = None,
    binned: int | None = None,
    neg_fraction: float | None = None,
) -> Steps:
    """Exact steps (``binned=None``) or one step per bin of ``binned`` evenly spaced thresholds.

    Args:
        scores: (n,) finite floating scores.
        positive: (n,) bool labels.
        weights: optional (P,) weights of the positives in the order of ``scores[positive]``.
        binned: None for exact, else the number of thresholds (>= 2).
        neg_fraction: see ``exact_steps`` (ignored when binned).
    """
    if binned is None:
        return exact_steps(scores, positive, weights, neg_fraction)
    return binned_steps(scores, positive, check_bins(binned), weights)
