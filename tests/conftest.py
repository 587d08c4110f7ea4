"""Shared fixtures: offline environment, tiny generated MVTec-format trees."""

from __future__ import annotations

import os

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("WANDB_SILENT", "true")

import logging  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

# Lightning's loggers keep handlers on streams that pytest's capture closes between tests.
logging.raiseExceptions = False


def make_mvtec_tree(
    root: Path,
    category: str = "widget",
    size: int = 48,
    n_train: int = 8,
    n_test_good: int = 3,
    defects: tuple[str, ...] = ("scratch", "hole"),
    n_per_defect: int = 3,
    seed: int = 0,
) -> Path:
    """Writes a small MVTec AD layout: smooth normal images, defects as bright squares with masks.

    Returns:
        ``root``.
    """
    rng = np.random.default_rng(seed)
    cat = root / category
    yy, xx = np.mgrid[0:size, 0:size]

    def normal() -> np.ndarray:
        phase = rng.uniform(0, 2 * np.pi)
        base = 0.5 + 0.25 * np.sin(xx / 5.0 + phase)[..., None] * np.array([1.0, 0.8, 0.6])
        return np.clip(base + rng.normal(0, 0.02, (size, size, 3)), 0, 1)

    def save(array: np.ndarray, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray((array * 255).astype(np.uint8)).save(path)

    for i in range(n_train):
        save(normal(), cat / "train" / "good" / f"{i:03d}.png")
    for i in range(n_test_good):
        save(normal(), cat / "test" / "good" / f"{i:03d}.png")
    for defect in defects:
        for i in range(n_per_defect):
            image = normal()
            mask = np.zeros((size, size), dtype=np.uint8)
            top, left = rng.integers(4, size - 16, size=2)
            mask[top : top + 10, left : left + 10] = 255
            image[mask > 0] = [1.0, 0.1, 0.1]
            save(image, cat / "test" / defect / f"{i:03d}.png")
            path = cat / "ground_truth" / defect / f"{i:03d}_mask.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(mask).save(path)
    return root


def make_mvtec3d_tree(root: Path, category: str = "bagel", **kwargs) -> Path:
    """The tree of :func:`make_mvtec_tree` in MVTec 3D-AD's RGB layout.

    ``root/<category>/{train/good/rgb, test/<defect>/rgb, test/<defect>/gt}``, masks named like their image.

    Returns:
        ``root``.
    """
    flat = make_mvtec_tree(root / ".flat", category=category, **kwargs) / category
    for image in sorted(flat.glob("*/*/*.png")):
        split, defect = image.parent.parent.name, image.parent.name
        if split == "ground_truth":
            target = root / category / "test" / defect / "gt" / image.name.replace("_mask", "")
        else:
            target = root / category / split / defect / "rgb" / image.name
        target.parent.mkdir(parents=True, exist_ok=True)
        image.rename(target)
    return root


@pytest.fixture
def mvtec_tree(tmp_path: Path) -> Path:
    """A fresh tiny MVTec-layout tree with category ``widget``."""
    return make_mvtec_tree(tmp_path / "mvtec")


@pytest.fixture(scope="session")
def shared_mvtec_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny MVTec-layout tree shared by read-only tests (category ``widget``)."""
    return make_mvtec_tree(tmp_path_factory.mktemp("shared") / "mvtec")


@pytest.fixture(scope="session")
def demo_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo set, built once per test session."""
    from adbench.data.demo_build import build_demo

    return build_demo(tmp_path_factory.mktemp("demo") / "demo", seed=0)
