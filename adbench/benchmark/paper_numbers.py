"""Reference numbers the papers report on MVTec AD, shown beside measured ones (fractions, not percent)."""

from __future__ import annotations

# DSR (Zavrtanik et al., ECCV 2022): image AUROC / pixel AP per category.
_DSR = {
    "bottle": (100.0, 91.5), "cable": (93.8, 70.4), "capsule": (98.1, 53.3), "carpet": (100.0, 78.2),
    "grid": (100.0, 68.0), "hazelnut": (95.6, 87.3), "leather": (100.0, 62.5), "metal_nut": (98.5, 67.5),
    "pill": (97.5, 65.7), "screw": (96.2, 52.5), "tile": (100.0, 93.9), "toothbrush": (99.7, 74.2),
    "transistor": (97.8, 41.1), "wood": (96.3, 68.4), "zipper": (100.0, 78.5),
}  # fmt: skip

#: (model, dataset, metric) -> {category or "mean": value in [0, 1]}.
PAPER_NUMBERS: dict[tuple[str, str, str], dict[str, float]] = {
    ("dsr", "mvtec", "image_AUROC"): {**{c: v[0] / 100 for c, v in _DSR.items()}, "mean": 0.982},
    ("dsr", "mvtec", "pixel_AP"): {**{c: v[1] / 100 for c, v in _DSR.items()}, "mean": 0.702},
    ("dsr", "ksdd2", "image_AP"): {"ksdd2": 0.872, "mean": 0.872},
    ("dsr", "ksdd2", "pixel_AP"): {"ksdd2": 0.614, "mean": 0.614},
    ("intra", "mvtec", "image_AUROC"): {"mean": 0.950},
    # PatchCore-25% (Roth et al., CVPR 2022, WideResNet-50): the mean the paper's summary reports.
    ("patchcore", "mvtec", "image_AUROC"): {"mean": 0.991},
    ("patchcore", "mvtec", "pixel_AUROC"): {"mean": 0.981},
    ("patchcore", "mvtec", "pixel_AUPRO"): {"mean": 0.934},
    ("intra", "mvtec", "pixel_AUROC"): {"mean": 0.966},
}


def paper_value(model: str, dataset: str, metric: str, category: str) -> float | None:
    """The paper's number for a cell (``category="mean"`` for the mean row), or None when not reported."""
    return PAPER_NUMBERS.get((model, dataset, metric), {}).get(category)
