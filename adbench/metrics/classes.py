"""torchmetrics ``Metric`` classes around the functional metrics, exact under DDP.

Each ``update(preds, target, index)`` appends the batch and the unique sample ids of the split to list
states (``dist_reduce_fx="cat"``). ``compute()`` concatenates them (across processes under DDP), drops
repeated ids keeping the first occurrence (``DistributedSampler`` pads the last batches by repeating
samples), orders the samples by id and calls the functional metric, so a DDP run gives exactly the
single-process value.

Call ``update`` during the epoch and ``compute`` at its end; calling the metric object (``forward``) also
computes a per-batch value, which is rarely meaningful for ranking metrics (and warns for one-class
batches).

Do not replace these by torchmetrics' ``BinaryAUROC`` & co.: those apply a sigmoid to scores outside [0, 1],
which squashes raw anomaly scores into ties.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from ._checks import as_labels, as_scores, pixel_pair
from .aupro import aupro, check_fpr_limit
from .auroc import image_auroc, pixel_auroc
from .average_precision import average_precision, pixel_average_precision
from .binned import check_bins
from .f1_max import f1_max


def first_by_index(index: Tensor) -> Tensor:
    """Positions that keep the first occurrence of each id, ordered by id.

    Args:
        index: (M,) integer sample ids, possibly repeated.

    Returns:
        (U,) int64 positions into ``index``, U = number of distinct ids, sorted by id.
    """
    order = torch.argsort(index, stable=True)
    ids = index[order]
    first = torch.ones_like(ids, dtype=torch.bool)
    first[1:] = ids[1:] != ids[:-1]
    return order[first]


class _IndexedMetric(Metric):
    """Stores (preds, target, index) per batch and evaluates the functional metric on unique samples."""

    is_differentiable = False
    higher_is_better = True
    full_state_update = False
    name = "metric"

    def __init__(self, *, binned: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.binned = None if binned is None else check_bins(binned)
        self.add_state("preds", default=[], dist_reduce_fx="cat")
        self.add_state("target", default=[], dist_reduce_fx="cat")
        self.add_state("index", default=[], dist_reduce_fx="cat")

    def _prepare(self, preds: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def _evaluate(self, preds: Tensor, target: Tensor) -> float:
        raise NotImplementedError

    def update(self, preds: Tensor, target: Tensor, index: Tensor) -> None:
        """Appends one batch.

        Args:
            preds: raw scores of the batch (see the class docstring for the shape).
            target: ground truth of the same shape, in {0, 1}.
            index: (B,) integer ids of the samples, unique within the split.
        """
        p, t = self._prepare(preds, target)
        idx = torch.as_tensor(index, device=p.device)
        if idx.dim() != 1 or idx.numel() != p.shape[0] or idx.is_floating_point() or idx.dtype == torch.bool:
            raise ValueError(
                f"{self.name}: index must be a (B,) integer tensor with one id per sample, got shape "
                f"{tuple(idx.shape)} and dtype {idx.dtype} for a batch of {p.shape[0]}."
            )
        self.preds.append(p)
        self.target.append(t)
        self.index.append(idx.long())

    def unique_samples(self) -> tuple[Tensor, Tensor] | None:
        """(preds, target) of every distinct sample seen (synced across processes), ordered by index;
        None (with a warning) before any update."""
        if isinstance(self.index, list) and not self.index:
            warnings.warn(f"{self.name}: compute() called without any update; returning nan.", stacklevel=2)
            return None
        keep = first_by_index(dim_zero_cat(self.index))
        return dim_zero_cat(self.preds)[keep], dim_zero_cat(self.target)[keep]

    def compute(self) -> Tensor:
        """The metric over all unique samples seen (synced across processes): a float64 scalar tensor."""
        samples = self.unique_samples()
        if samples is None:
            return torch.tensor(float("nan"), dtype=torch.float64)
        value = self._evaluate(*samples)
        return torch.tensor(value, dtype=torch.float64, device=samples[0].device)


class _ImageMetric(_IndexedMetric):
    def _prepare(self, preds: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
        p = torch.as_tensor(preds).detach()
        t = torch.as_tensor(target)
        if not (_is_column(p) and _is_column(t) and p.numel() == t.numel()):
            raise ValueError(
                f"{self.name}: preds and target must both have shape (B,), got {tuple(p.shape)} and "
                f"{tuple(t.shape)}."
            )
        p = as_scores(p.reshape(-1), self.name).double()
        return p, as_labels(t.reshape(-1), self.name).to(device=p.device, dtype=torch.uint8)


def _is_column(t: Tensor) -> bool:
    """True for (B,) and (B, 1) tensors."""
    return t.dim() == 1 or (t.dim() == 2 and t.shape[1] == 1)


class _PixelMetric(_IndexedMetric):
    def _prepare(self, preds: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
        m, g = pixel_pair(torch.as_tensor(preds).detach(), target, self.name)
        return m.float(), g.to(torch.uint8)


class ImageAUROC(_ImageMetric):
    """Image-level AUROC (``image_auroc``) of raw scores.

    ``update(preds (B,), target (B,) in {0, 1}, index (B,))``; image scores are kept as float64.

    Args:
        binned: None (exact) or number of thresholds, see ``image_auroc``.
        **kwargs: forwarded to ``torchmetrics.Metric``.
    """

    name = "image_AUROC"

    def _evaluate(self, preds: Tensor, target: Tensor) -> float:
        return image_auroc(preds, target, binned=self.binned)


class ImageF1Max(_ImageMetric):
    """Best image-level F1 over all thresholds (``f1_max``). Same update as ``ImageAUROC``."""

    name = "image_F1max"

    def _evaluate(self, preds: Tensor, target: Tensor) -> float:
        return f1_max(preds, target, binned=self.binned)


class ImageAveragePrecision(_ImageMetric):
    """Image-level average precision (``average_precision``). Same update as ``ImageAUROC``."""

    name = "image_AP"

    def _evaluate(self, preds: Tensor, target: Tensor) -> float:
        return average_precision(preds, target, binned=self.binned)


class PixelAUROC(_PixelMetric):
    """Pixel-level AUROC (``pixel_auroc``).

    ``update(preds (B, 1, H, W) or (B, H, W), target same shape in {0, 1}, index (B,))``. The maps are
    stored as float32 and the masks as uint8 on the device they are given: 5 bytes per pixel (about
    160 MB for 500 maps of 256 x 256), and ``compute()`` briefly needs about three times that.

    Args:
        binned: None (exact) or number of thresholds, see ``pixel_auroc``.
        **kwargs: forwarded to ``torchmetrics.Metric``.
    """

    name = "pixel_AUROC"

    def _evaluate(self, preds: Tensor, target: Tensor) -> float:
        return pixel_auroc(preds, target, binned=self.binned)


class PixelAveragePrecision(_PixelMetric):
    """Pixel-level average precision (``pixel_average_precision``); update and memory as ``PixelAUROC``."""

    name = "pixel_AP"

    def _evaluate(self, preds: Tensor, target: Tensor) -> float:
        return pixel_average_precision(preds, target, binned=self.binned)


class PixelAUPRO(_PixelMetric):
    """AUPRO up to ``fpr_limit`` (``aupro``). Same update and memory as ``PixelAUROC``.

    Args:
        fpr_limit: FPR integration limit in (0, 1].
        binned: None (exact) or number of thresholds, see ``aupro``.
        **kwargs: forwarded to ``torchmetrics.Metric``.
    """

    name = "pixel_AUPRO"

    def __init__(self, fpr_limit: float = 0.3, *, binned: int | None = None, **kwargs: Any) -> None:
        super().__init__(binned=binned, **kwargs)
        self.fpr_limit = check_fpr_limit(fpr_limit)

    def _evaluate(self, preds: Tensor, target: Tensor) -> float:
        return aupro(preds, target, self.fpr_limit, binned=self.binned)


class PixelMetrics(_PixelMetric):
    """Pixel AUROC, AUPRO and AP from one stored copy of the maps (a third of the memory of the three
    separate classes). Same update as ``PixelAUROC``; ``compute()`` returns a dict of float64 scalars keyed
    ``pixel_AUROC``, ``pixel_AUPRO``, ``pixel_AP``.

    Args:
        fpr_limit: FPR integration limit of AUPRO in (0, 1].
        binned: None (exact) or number of thresholds.
        **kwargs: forwarded to ``torchmetrics.Metric``.
    """

    name = "pixel_metrics"

    def __init__(self, fpr_limit: float = 0.3, *, binned: int | None = None, **kwargs: Any) -> None:
        super().__init__(binned=binned, **kwargs)
        self.fpr_limit = check_fpr_limit(fpr_limit)

    def compute(self) -> dict[str, Tensor]:  # type: ignore[override]
        samples = self.unique_samples()
        names = ("pixel_AUROC", "pixel_AUPRO", "pixel_AP")
        if samples is None:
            return {name: torch.tensor(float("nan"), dtype=torch.float64) for name in names}
        maps, masks = samples
        values = (
            pixel_auroc(maps, masks, binned=self.binned),
            aupro(maps, masks, self.fpr_limit, binned=self.binned),
            pixel_average_precision(maps, masks, binned=self.binned),
        )
        return {
            n: torch.tensor(v, dtype=torch.float64, device=maps.device)
            for n, v in zip(names, values, strict=True)
        }
