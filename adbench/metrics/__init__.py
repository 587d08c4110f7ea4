"""Exact, vectorized anomaly-detection metrics (raw scores of any range) and their torchmetrics classes.

Functional API (torch tensors in, Python floats out, CPU or CUDA):
``image_auroc``, ``pixel_auroc``, ``aupro``, ``f1_max``, ``average_precision``,
``pixel_average_precision`` and ``compute_all`` (every headline metric at once, keys ``METRIC_NAMES``
plus ``"image_AP"``). Every function takes ``binned=None`` (exact) or a number of thresholds.

Metric classes (``update(preds, target, index)``, DDP-safe de-duplication by sample index):
``ImageAUROC``, ``PixelAUROC``, ``PixelAUPRO``, ``ImageF1Max``, ``ImageAveragePrecision``,
``PixelAveragePrecision``, and ``PixelMetrics`` (the three pixel metrics from one copy of the maps).
"""

from .aupro import aupro
from .auroc import image_auroc, pixel_auroc
from .average_precision import average_precision, pixel_average_precision
from .classes import (
    ImageAUROC,
    ImageAveragePrecision,
    ImageF1Max,
    PixelAUPRO,
    PixelAUROC,
    PixelAveragePrecision,
    PixelMetrics,
)
from .f1_max import f1_max
from .summary import METRIC_NAMES, compute_all

__all__ = [
    "METRIC_NAMES",
    "ImageAUROC",
    "ImageAveragePrecision",
    "ImageF1Max",
    "PixelAUPRO",
    "PixelAUROC",
    "PixelAveragePrecision",
    "PixelMetrics",
    "aupro",
    "average_precision",
    "compute_all",
    "f1_max",
    "image_auroc",
    "pixel_auroc",
    "pixel_average_precision",
]
