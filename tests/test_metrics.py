"""Tests of adbench.metrics against slow, obviously-correct references and scikit-learn."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from scipy import ndimage
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score

from adbench.metrics import (
    METRIC_NAMES,
    ImageAUROC,
    ImageAveragePrecision,
    ImageF1Max,
    PixelAUPRO,
    PixelAUROC,
    PixelAveragePrecision,
    aupro,
    average_precision,
    compute_all,
    f1_max,
    image_auroc,
    pixel_auroc,
    pixel_average_precision,
    ranking,
)
from adbench.metrics.aupro import aupro_from_steps, component_weights
from adbench.metrics.binned import bin_ids, score_range
from adbench.metrics.ranking import exact_steps

TOL = 1e-6


# ----------------------------------------------------------------------------------------------------------
# Slow references
# ----------------------------------------------------------------------------------------------------------


def ref_auroc(s: np.ndarray, y: np.ndarray) -> float:
    """Mann-Whitney: fraction of (positive, negative) pairs ranked correctly, ties count 1/2."""
    pos, neg = s[y == 1][:, None], s[y == 0][None, :]
    return float(((pos > neg).sum() + 0.5 * (pos == neg).sum()) / (pos.size * neg.size))


def _pr_points(s: np.ndarray, y: np.ndarray) -> list[tuple[int, int]]:
    """(TP, FP) at every distinct threshold, highest first (score >= threshold is anomalous)."""
    return [(int(((s >= t) & (y == 1)).sum()), int(((s >= t) & (y == 0)).sum())) for t in np.unique(s)[::-1]]


def ref_average_precision(s: np.ndarray, y: np.ndarray) -> float:
    n_pos, ap, prev_recall = int(y.sum()), 0.0, 0.0
    for tp, fp in _pr_points(s, y):
        recall = tp / n_pos
        ap += (recall - prev_recall) * tp / (tp + fp)
        prev_recall = recall
    return ap


def ref_f1_max(s: np.ndarray, y: np.ndarray) -> float:
    n_pos = int(y.sum())
    best = 0.0
    for tp, fp in _pr_points(s, y):
        if tp:
            precision, recall = tp / (tp + fp), tp / n_pos
            best = max(best, 2 * precision * recall / (precision + recall))
    return best


def ref_aupro(maps: np.ndarray, masks: np.ndarray, fpr_limit: float) -> float:
    """Loops over every distinct score; explicit per-region overlaps; trapezoid cut at the limit."""
    regions = []
    for img in range(maps.shape[0]):
        labels, n = ndimage.label(masks[img], structure=np.ones((3, 3)))
        regions += [(img, labels == k) for k in range(1, n + 1)]
    normal = masks == 0
    xs, ys = [0.0], [0.0]
    for t in np.unique(maps)[::-1]:
        xs.append(float((maps[normal] >= t).mean()))
        ys.append(float(np.mean([(maps[img][region] >= t).mean() for img, region in regions])))
    x, y = np.array(xs), np.array(ys)
    beyond = np.flatnonzero(x > fpr_limit)
    if beyond.size:
        i = beyond[0]
        y_cut = y[i - 1] + (y[i] - y[i - 1]) * (fpr_limit - x[i - 1]) / (x[i] - x[i - 1])
        x, y = np.append(x[:i], fpr_limit), np.append(y[:i], y_cut)
    return float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2) / fpr_limit)


def sk_f1_max(s: np.ndarray, y: np.ndarray) -> float:
    precision, recall, _ = precision_recall_curve(y, s)
    denom = precision + recall
    return float(np.max(np.where(denom > 0, 2 * precision * recall / np.where(denom > 0, denom, 1), 0)))


# ----------------------------------------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------------------------------------

KINDS = ("normal", "ties", "negative", "huge", "tiny_range", "separated", "constant")


def make_scores(rng: np.random.Generator, n: int, kind: str, y: np.ndarray) -> np.ndarray:
    """Scores loosely correlated with y, in one of several adversarial flavours."""
    base = rng.normal(size=n) + 0.8 * y
    if kind == "normal":
        return base
    if kind == "ties":
        return np.round(base * 1.5).astype(np.float64)
    if kind == "negative":
        return base - 1e3
    if kind == "huge":
        return np.round(base * 3) * 1e6
    if kind == "tiny_range":
        return 1.0 + np.round(base * 3) * 1e-12
    if kind == "separated":  # positives mostly above the negatives
        return base + 3 * y
    return np.full(n, -7.25)


def make_labels(rng: np.random.Generator, n: int) -> np.ndarray:
    y = (rng.random(n) < rng.uniform(0.2, 0.8)).astype(np.int64)
    y[0], y[1] = 0, 1
    return y


def make_maps(
    rng: np.random.Generator, n: int = 3, h: int = 9, w: int = 11, kind: str = "normal"
) -> tuple[np.ndarray, np.ndarray]:
    """Small maps with blob, line and single-pixel defects; one image stays normal."""
    masks = np.zeros((n, h, w), dtype=np.int64)
    for i in range(n - 1):
        cy, cx = rng.integers(0, h), rng.integers(0, w)
        masks[i, max(cy - 1, 0) : cy + 2, max(cx - 2, 0) : cx + 1] = 1
        masks[i, rng.integers(0, h), rng.integers(0, w)] = 1
        masks[i, (np.arange(h), np.arange(h) % w)] = i % 2
    masks[0, 0, 0], masks[0, -1, -1] = 1, 0
    maps = make_scores(rng, masks.size, kind, masks.reshape(-1)).reshape(masks.shape)
    return maps, masks


# ----------------------------------------------------------------------------------------------------------
# Image metrics
# ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_image_metrics_match_references_and_sklearn(kind: str) -> None:
    rng = np.random.default_rng(hash(kind) % 2**32)
    for n in (2, 3, 7, 40, 200):
        y = make_labels(rng, n)
        s = make_scores(rng, n, kind, y)
        st, yt = torch.tensor(s), torch.tensor(y)
        assert image_auroc(st, yt) == pytest.approx(ref_auroc(s, y), abs=TOL)
        assert image_auroc(st, yt) == pytest.approx(roc_auc_score(y, s), abs=TOL)
        assert average_precision(st, yt) == pytest.approx(ref_average_precision(s, y), abs=TOL)
        assert average_precision(st, yt) == pytest.approx(average_precision_score(y, s), abs=TOL)
        assert f1_max(st, yt) == pytest.approx(ref_f1_max(s, y), abs=TOL)
        assert f1_max(st, yt) == pytest.approx(sk_f1_max(s, y), abs=TOL)


def test_image_metrics_accept_dtypes_and_devices_consistently() -> None:
    rng = np.random.default_rng(1)
    y = make_labels(rng, 50)
    s = np.round(make_scores(rng, 50, "normal", y) * 4)
    expected = roc_auc_score(y, s)
    for scores in (torch.tensor(s), torch.tensor(s).float(), torch.tensor(s).long(), torch.tensor(s).half()):
        for labels in (torch.tensor(y), torch.tensor(y).bool(), torch.tensor(y).float()):
            assert image_auroc(scores, labels) == pytest.approx(expected, abs=TOL)
    assert image_auroc(s, y) == pytest.approx(expected, abs=TOL)  # numpy input is accepted too


def test_known_answers_image() -> None:
    s = torch.tensor([0.1, 0.4, 0.35, 0.8])
    y = torch.tensor([0, 0, 1, 1])
    assert image_auroc(s, y) == pytest.approx(0.75, abs=1e-12)
    # thresholds 0.8: P=1 R=1/2; 0.4: P=1/2 R=1/2; 0.35: P=2/3 R=1 -> AP = 1/2 + 1/2 * 2/3
    assert average_precision(s, y) == pytest.approx(5 / 6, abs=1e-12)
    # F1 at 0.8 = 2/3, at 0.4 = 1/2, at 0.35 = 4/5, at 0.1 = 2/3
    assert f1_max(s, y) == pytest.approx(0.8, abs=1e-12)
    # ties: one positive tied with one negative counts 1/2
    assert image_auroc(torch.tensor([1.0, 1.0, 0.0]), torch.tensor([1, 0, 0])) == pytest.approx(0.75)
    perfect = torch.tensor([-5.0, -4.0, 3e6, 4e6])
    assert image_auroc(perfect, y) == 1.0
    assert average_precision(perfect, y) == 1.0
    assert f1_max(perfect, y) == 1.0
    assert image_auroc(-perfect, y) == 0.0


def test_constant_scores_are_well_defined() -> None:
    y = torch.tensor([0, 1, 1, 0, 0])
    s = torch.full((5,), 3.0)
    assert image_auroc(s, y) == 0.5
    assert average_precision(s, y) == pytest.approx(2 / 5)
    assert f1_max(s, y) == pytest.approx(2 * 2 / (2 + 3 + 2))
    assert image_auroc(s, y, binned=10) == 0.5


# ----------------------------------------------------------------------------------------------------------
# Pixel metrics
# ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_pixel_auroc_and_ap_match_sklearn(kind: str) -> None:
    rng = np.random.default_rng(5 + len(kind))
    maps, masks = make_maps(rng, n=4, h=16, w=13, kind=kind)
    mt, gt = torch.tensor(maps), torch.tensor(masks)
    flat_s, flat_y = maps.reshape(-1), masks.reshape(-1)
    assert pixel_auroc(mt, gt) == pytest.approx(roc_auc_score(flat_y, flat_s), abs=TOL)
    assert pixel_auroc(mt[:, None], gt[:, None].float()) == pytest.approx(ref_auroc(flat_s, flat_y), abs=TOL)
    assert pixel_average_precision(mt, gt) == pytest.approx(average_precision_score(flat_y, flat_s), abs=TOL)


@pytest.mark.parametrize("kind", ("normal", "ties", "negative", "huge", "separated", "constant"))
@pytest.mark.parametrize("fpr_limit", (0.3, 0.05, 0.5, 1.0))
def test_aupro_matches_reference(kind: str, fpr_limit: float) -> None:
    rng = np.random.default_rng(int(fpr_limit * 100) + len(kind))
    for _ in range(2):
        maps, masks = make_maps(rng, kind=kind)
        value = aupro(torch.tensor(maps)[:, None], torch.tensor(masks)[:, None], fpr_limit)
        assert value == pytest.approx(ref_aupro(maps, masks, fpr_limit), abs=TOL)
        assert 0.0 <= value <= 1.0


def test_aupro_single_pixel_defects_and_diagonal_neighbours() -> None:
    rng = np.random.default_rng(3)
    masks = np.zeros((2, 6, 6), dtype=np.int64)
    masks[0, 1, 1] = masks[0, 2, 2] = 1  # diagonal neighbours: one region (8-connectivity)
    masks[0, 4, 5] = 1  # single pixel
    masks[1, 0, 0] = 1  # single pixel in another image
    maps = rng.normal(size=masks.shape)
    for fpr_limit in (0.3, 0.1, 1.0):
        value = aupro(torch.tensor(maps), torch.tensor(masks), fpr_limit)
        assert value == pytest.approx(ref_aupro(maps, masks, fpr_limit), abs=TOL)
    _, n_regions = component_weights(torch.tensor(masks).bool())
    assert n_regions == 3


def test_known_answers_aupro() -> None:
    # one image 1 x 5: regions {0} and {4}; normal pixels 1..3.
    maps = torch.tensor([[[0.9, 0.2, 0.5, 0.1, 0.3]]])
    masks = torch.tensor([[[1, 0, 0, 0, 1]]])
    # curve: (0,0) -> (0,1/2) -> (1/3,1/2) -> (1/3,1) -> (2/3,1) -> (1,1)
    assert aupro(maps, masks, 1.0) == pytest.approx(1 / 6 + 2 / 3, abs=1e-12)
    assert aupro(maps, masks, 0.5) == pytest.approx((1 / 6 + 1 / 6) / 0.5, abs=1e-12)
    assert aupro(maps, masks, 0.3) == pytest.approx(0.5, abs=1e-12)
    # limits exactly at the vertical jump (FPR 1/3) and at the end of the next horizontal segment
    assert aupro(maps, masks, 1 / 3) == pytest.approx(0.5, abs=1e-12)
    assert aupro(maps, masks, 2 / 3) == pytest.approx((1 / 6 + 1 / 3) / (2 / 3), abs=1e-12)
    # constant map: one diagonal segment (0,0) -> (1,1), area fpr_limit^2 / 2
    assert aupro(torch.zeros(1, 2, 3), torch.tensor([[[1, 0, 0], [0, 0, 0]]]), 0.3) == pytest.approx(0.15)
    # perfect separation, with raw scores of any sign and magnitude
    perfect = torch.where(masks.bool(), torch.tensor(-1e6), torch.tensor(-2e6)).double()
    assert aupro(perfect, masks) == 1.0


def test_aupro_never_exceeds_one() -> None:
    rng = np.random.default_rng(11)
    for _ in range(20):
        masks = (rng.random((3, 17, 19)) < 0.4).astype(np.int64)
        masks[0, 0, 0] = 0
        maps = np.where(masks == 1, rng.uniform(1, 2, masks.shape), rng.uniform(-2, 1, masks.shape))
        value = aupro(torch.tensor(maps).float(), torch.tensor(masks), rng.uniform(0.01, 1.0))
        assert value <= 1.0
        assert value == pytest.approx(1.0, abs=1e-12)


def test_aupro_cut_pool_equals_full_curve() -> None:
    """The FPR-limited partial sort gives exactly the curve of the full sort (larger inputs, ties)."""
    rng = np.random.default_rng(2)
    masks = np.zeros((12, 48, 40), dtype=bool)
    for i in range(8):
        for _ in range(3):
            cy, cx, r = rng.integers(0, 48), rng.integers(0, 40), rng.integers(1, 8)
            masks[i, max(cy - r, 0) : cy + r, max(cx - r, 0) : cx + r] = True
    for maps in (
        rng.normal(size=masks.shape) + masks,
        np.round((rng.normal(size=masks.shape) + masks) * 20) / 20,
        np.round(rng.normal(size=masks.shape) + masks).astype(np.float32),
    ):
        mt, gt = torch.tensor(maps).reshape(-1), torch.tensor(masks)
        weights, n_regions = component_weights(gt)
        full = exact_steps(mt, gt.reshape(-1), weights)
        for fpr_limit in (0.01, 0.3, 0.7):
            cut = exact_steps(mt, gt.reshape(-1), weights, neg_fraction=fpr_limit)
            assert cut.neg.numel() < full.neg.numel() or fpr_limit == 0.7
            expected = aupro_from_steps(full, n_regions, fpr_limit)
            assert aupro_from_steps(cut, n_regions, fpr_limit) == pytest.approx(expected, abs=1e-12)
            assert aupro(torch.tensor(maps), gt, fpr_limit) == pytest.approx(expected, abs=1e-12)


def test_torch_sort_path_gives_the_same_results(monkeypatch: pytest.MonkeyPatch) -> None:
    """CPU float sorting goes through numpy; the torch.sort path (CUDA, other dtypes) must agree."""
    rng = np.random.default_rng(6)
    maps, masks = make_maps(rng, n=5, h=20, w=20, kind="ties")
    mt, gt = torch.tensor(maps).float(), torch.tensor(masks)

    def all_pixel_metrics() -> list[float]:
        return [pixel_auroc(mt, gt), pixel_average_precision(mt, gt), aupro(mt, gt), aupro(mt, gt, 0.02)]

    expected = all_pixel_metrics()
    monkeypatch.setattr(ranking, "sort_values", lambda values: torch.sort(values).values)
    assert all_pixel_metrics() == expected


# ----------------------------------------------------------------------------------------------------------
# Edge cases and validation
# ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("labels", ([0, 0, 0], [1, 1, 1]))
def test_image_single_class_warns_and_returns_nan(labels: list[int]) -> None:
    s, y = torch.tensor([0.1, 0.5, 0.3]), torch.tensor(labels)
    for fn in (image_auroc, average_precision, f1_max):
        with pytest.warns(UserWarning, match="undefined"):
            assert math.isnan(fn(s, y))


def test_pixel_single_class_warns_and_returns_nan() -> None:
    maps = torch.rand(2, 1, 4, 4)
    for masks in (torch.zeros(2, 1, 4, 4), torch.ones(2, 1, 4, 4)):
        for fn in (pixel_auroc, pixel_average_precision, aupro):
            with pytest.warns(UserWarning, match="pixel"):
                assert math.isnan(fn(maps, masks))


@pytest.mark.parametrize(
    ("fn", "name"),
    [
        (image_auroc, "image_AUROC"),
        (average_precision, "image_AP"),
        (f1_max, "image_F1max"),
    ],
)
def test_nan_inf_scores_raise_naming_the_metric(fn, name: str) -> None:
    s = torch.tensor([0.1, float("nan"), 0.3, float("inf"), -float("inf")])
    with pytest.raises(ValueError, match=f"{name}: scores contain 3 NaN/inf values"):
        fn(s, torch.tensor([0, 1, 0, 1, 0]))


@pytest.mark.parametrize(
    ("fn", "name"),
    [(pixel_auroc, "pixel_AUROC"), (pixel_average_precision, "pixel_AP"), (aupro, "pixel_AUPRO")],
)
def test_nan_maps_raise_naming_the_metric(fn, name: str) -> None:
    maps = torch.rand(2, 1, 3, 3)
    maps[1, 0, 2, 2] = float("nan")
    masks = torch.zeros(2, 1, 3, 3)
    masks[0, 0, 0, 0] = 1
    with pytest.raises(ValueError, match=f"{name}: anomaly maps contain 1 NaN/inf"):
        fn(maps, masks)


def test_shape_and_label_errors() -> None:
    with pytest.raises(ValueError, match=r"\(4,\) and \(3,\)"):
        image_auroc(torch.rand(4), torch.tensor([0, 1, 0]))
    with pytest.raises(ValueError, match=r"\(2, 1, 4, 4\) and \(2, 1, 4, 5\)"):
        pixel_auroc(torch.rand(2, 1, 4, 4), torch.zeros(2, 1, 4, 5))
    with pytest.raises(ValueError, match=r"\(2, 3, 4, 4\)"):
        aupro(torch.rand(2, 3, 4, 4), torch.zeros(2, 3, 4, 4))
    with pytest.raises(ValueError, match="binary"):
        image_auroc(torch.rand(3), torch.tensor([0, 2, 1]))
    with pytest.raises(ValueError, match="binary"):
        aupro(torch.rand(1, 2, 2), torch.tensor([[[0.0, 0.5], [1.0, 0.0]]]))
    with pytest.raises(ValueError, match="fpr_limit"):
        aupro(torch.rand(1, 2, 2), torch.tensor([[[0, 1], [1, 0]]]), fpr_limit=0.0)
    with pytest.raises(ValueError, match="binned"):
        image_auroc(torch.rand(3), torch.tensor([0, 1, 1]), binned=1)


# ----------------------------------------------------------------------------------------------------------
# Binned mode
# ----------------------------------------------------------------------------------------------------------


def _bin_counts(s: torch.Tensor, y: torch.Tensor, bins: int) -> tuple[np.ndarray, np.ndarray]:
    lo, hi = score_range(s)
    k = bin_ids(s, lo, hi, bins).numpy()
    yb = y.numpy().astype(bool)
    return np.bincount(k[yb], minlength=bins), np.bincount(k[~yb], minlength=bins)


@pytest.mark.parametrize("bins", (2, 7, 50, 1000))
@pytest.mark.parametrize("kind", ("normal", "ties", "huge"))
def test_binned_image_metrics_within_documented_bounds(bins: int, kind: str) -> None:
    rng = np.random.default_rng(bins)
    for n in (10, 300):
        y = make_labels(rng, n)
        s, yt = torch.tensor(make_scores(rng, n, kind, y)), torch.tensor(y)
        p_k, n_k = _bin_counts(s, yt, bins)
        n_pos, n_neg = p_k.sum(), n_k.sum()
        auroc_bound = 0.5 * float((p_k * n_k).sum()) / (n_pos * n_neg)
        assert abs(image_auroc(s, yt, binned=bins) - image_auroc(s, yt)) <= auroc_bound + 1e-12
        m_k = p_k + n_k
        m_above = np.cumsum(m_k[::-1])[::-1] - m_k
        ap_bound = float((p_k * np.minimum(1, m_k / (m_above + 1))).sum() / n_pos)
        assert abs(average_precision(s, yt, binned=bins) - average_precision(s, yt)) <= ap_bound + 1e-12
        f1_gap = f1_max(s, yt) - f1_max(s, yt, binned=bins)
        assert -1e-12 <= f1_gap <= float(np.max(np.where(p_k > 0, n_k / (n_pos + n_k), 0))) + 1e-12


def test_binned_equals_exact_when_bins_separate_all_scores() -> None:
    y = torch.tensor([0, 1, 0, 1, 1, 0])
    s = torch.tensor([0.0, 1.0, 2.0, 3.0, 4.0, 5.0])  # 6 thresholds on the integer grid
    assert image_auroc(s, y, binned=6) == image_auroc(s, y)
    assert average_precision(s, y, binned=6) == pytest.approx(average_precision(s, y), abs=1e-12)
    assert f1_max(s, y, binned=6) == pytest.approx(f1_max(s, y), abs=1e-12)


@pytest.mark.parametrize("bins", (3, 30, 500))
def test_binned_pixel_metrics_within_documented_bounds(bins: int) -> None:
    rng = np.random.default_rng(bins + 1)
    maps, masks = make_maps(rng, n=4, h=20, w=20)
    mt, gt = torch.tensor(maps).float(), torch.tensor(masks)
    p_k, n_k = _bin_counts(mt.reshape(-1), gt.reshape(-1), bins)
    bound = 0.5 * float((p_k * n_k).sum()) / (p_k.sum() * n_k.sum())
    assert abs(pixel_auroc(mt, gt, binned=bins) - pixel_auroc(mt, gt)) <= bound + 1e-12
    # AUPRO: |error| <= min(max_k dPRO_k, max_k dFPR_k / fpr_limit)
    lo, hi = score_range(mt)
    k = bin_ids(mt.reshape(-1), lo, hi, bins).numpy()
    weights, n_regions = component_weights(gt.bool())
    d_pro = np.bincount(k[masks.reshape(-1) == 1], weights=weights.numpy(), minlength=bins) / n_regions
    for fpr_limit in (0.05, 0.3, 1.0):
        bound = min(d_pro.max(), n_k.max() / n_k.sum() / fpr_limit)
        assert abs(aupro(mt, gt, fpr_limit, binned=bins) - aupro(mt, gt, fpr_limit)) <= bound + 1e-12
    assert pixel_average_precision(mt, gt, binned=bins) == pytest.approx(
        average_precision(mt.reshape(-1), gt.reshape(-1), binned=bins), abs=1e-12
    )


# ----------------------------------------------------------------------------------------------------------
# compute_all and Metric classes
# ----------------------------------------------------------------------------------------------------------


def test_compute_all_matches_functionals() -> None:
    rng = np.random.default_rng(4)
    maps, masks = make_maps(rng, n=6, h=12, w=12, kind="ties")
    mt, gt = torch.tensor(maps)[:, None].float(), torch.tensor(masks)[:, None]
    scores = mt.amax(dim=(1, 2, 3))
    labels = gt.amax(dim=(1, 2, 3))
    labels[-1] = 1
    out = compute_all(scores, labels, mt, gt)
    assert set(out) == {*METRIC_NAMES, "image_AP"}
    assert out["image_AUROC"] == image_auroc(scores, labels)
    assert out["image_F1max"] == f1_max(scores, labels)
    assert out["image_AP"] == average_precision(scores, labels)
    assert out["pixel_AUROC"] == pixel_auroc(mt, gt)
    assert out["pixel_AP"] == pixel_average_precision(mt, gt)
    assert out["pixel_AUPRO"] == pytest.approx(aupro(mt, gt), abs=1e-12)


def test_compute_all_without_masks_gives_silent_nan() -> None:
    scores, labels = torch.tensor([0.1, 0.9, 0.4]), torch.tensor([0, 1, 1])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = compute_all(scores, labels)
        assert all(math.isnan(out[k]) for k in ("pixel_AUROC", "pixel_AUPRO", "pixel_AP"))
        out = compute_all(scores, labels, torch.rand(3, 1, 4, 4), torch.zeros(3, 1, 4, 4))
        assert all(math.isnan(out[k]) for k in ("pixel_AUROC", "pixel_AUPRO", "pixel_AP"))
    assert out["image_AUROC"] == 1.0
    with pytest.warns(UserWarning) as record:
        out = compute_all(scores, torch.tensor([0, 0, 0]))
    assert len(record) == 1 and math.isnan(out["image_AUROC"])


def _batches(n: int, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Shuffled sample ids in batches, with padding duplicates like DistributedSampler."""
    ids = np.concatenate([rng.permutation(n), rng.integers(0, n, 3)])
    return [ids[i : i + batch_size] for i in range(0, len(ids), batch_size)]


def test_metric_classes_drop_duplicates_and_match_functionals() -> None:
    rng = np.random.default_rng(8)
    maps, masks = make_maps(rng, n=9, h=10, w=8, kind="ties")
    mt, gt = torch.tensor(maps, dtype=torch.float32)[:, None], torch.tensor(masks)[:, None].float()
    scores = mt.amax(dim=(1, 2, 3)) + torch.tensor(rng.normal(size=9), dtype=torch.float32)
    labels = gt.amax(dim=(1, 2, 3)).long()
    image = {"AUROC": ImageAUROC(), "F1": ImageF1Max(), "AP": ImageAveragePrecision()}
    pixel = {"AUROC": PixelAUROC(), "AP": PixelAveragePrecision(), "AUPRO": PixelAUPRO(fpr_limit=0.2)}
    for ids in _batches(9, 4, rng):
        idx = torch.tensor(ids)
        for metric in image.values():
            metric.update(scores[idx], labels[idx], idx)
        for metric in pixel.values():
            metric.update(mt[idx], gt[idx], idx)
    assert float(image["AUROC"].compute()) == image_auroc(scores, labels)
    assert float(image["F1"].compute()) == f1_max(scores, labels)
    assert float(image["AP"].compute()) == average_precision(scores, labels)
    assert float(pixel["AUROC"].compute()) == pixel_auroc(mt, gt)
    assert float(pixel["AP"].compute()) == pixel_average_precision(mt, gt)
    assert float(pixel["AUPRO"].compute()) == aupro(mt, gt, 0.2)
    pixel["AUPRO"].reset()
    with pytest.warns(UserWarning):
        assert math.isnan(float(pixel["AUPRO"].compute()))


def test_metric_class_input_checks() -> None:
    metric = ImageAUROC()
    with pytest.raises(ValueError, match="index"):
        metric.update(torch.rand(3), torch.tensor([0, 1, 0]), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="image_AUROC"):
        metric.update(torch.rand(3, 2), torch.tensor([0, 1, 0]), torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="pixel_AUPRO"):
        PixelAUPRO().update(torch.rand(2, 1, 4, 4), torch.zeros(2, 1, 4, 3), torch.tensor([0, 1]))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu() -> None:
    rng = np.random.default_rng(9)
    maps, masks = make_maps(rng, n=5, h=32, w=32, kind="ties")
    mt, gt = torch.tensor(maps).float(), torch.tensor(masks)
    scores, labels = mt.amax(dim=(1, 2)), torch.tensor([1, 1, 1, 1, 0])
    cpu = compute_all(scores, labels, mt, gt)
    cuda = compute_all(scores.cuda(), labels.cuda(), mt.cuda(), gt.cuda())
    for key, value in cpu.items():
        assert cuda[key] == pytest.approx(value, abs=1e-12)
    assert aupro(mt.cuda(), gt.cuda()) == pytest.approx(aupro(mt, gt), abs=1e-12)
    assert pixel_auroc(mt.cuda(), gt.cuda(), binned=100) == pixel_auroc(mt, gt, binned=100)


def test_pixel_metrics_set_equals_the_separate_classes():
    from adbench.metrics import PixelAUPRO, PixelAUROC, PixelAveragePrecision, PixelMetrics

    generator = torch.Generator().manual_seed(3)
    maps = torch.randn(6, 1, 12, 12, generator=generator)
    masks = (torch.rand(6, 1, 12, 12, generator=generator) > 0.8).float()
    index = torch.tensor([0, 1, 2, 3, 4, 5])
    combined, separate = PixelMetrics(fpr_limit=0.3), [PixelAUROC(), PixelAUPRO(0.3), PixelAveragePrecision()]
    for start in (0, 3, 3):  # the repeated batch mimics DDP padding duplicates
        for metric in [combined, *separate]:
            metric.update(maps[start : start + 3], masks[start : start + 3], index[start : start + 3])
    values = combined.compute()
    assert values["pixel_AUROC"].item() == separate[0].compute().item()
    assert values["pixel_AUPRO"].item() == separate[1].compute().item()
    assert values["pixel_AP"].item() == separate[2].compute().item()
