"""Datamodules for MVTec-style trees: MVTecAD, MVTec3D (RGB only) and Folder (bring your own data)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from adbench.data.base import AnomalyDataModule
from adbench.data.dataset import Sample
from adbench.data.image_io import list_images

MVTEC_AD_CATEGORIES = (
    "bottle", "cable", "capsule", "carpet", "grid", "hazelnut", "leather", "metal_nut",
    "pill", "screw", "tile", "toothbrush", "transistor", "wood", "zipper",
)  # fmt: skip
MVTEC_AD_TEXTURES = ("carpet", "grid", "leather", "tile", "wood")
MVTEC_3D_CATEGORIES = (
    "bagel", "cable_gland", "carrot", "cookie", "dowel", "foam", "peach", "potato", "rope", "tire",
)  # fmt: skip


def mvtec_layout_samples(
    category_root: Path,
    split: str,
    mask_root: Callable[[str], Path],
    image_subdir: str = "",
    mask_suffix: str = "_mask",
) -> list[Sample]:
    """Samples of an MVTec-layout split: ``split/good`` is normal, every other ``split/<defect>`` anomalous.

    A defect whose mask folder does not exist has image-level labels only (``mask_path`` None).

    Args:
        category_root: the category folder.
        split: "train" or "test".
        mask_root: maps a defect name to the folder holding its masks.
        image_subdir: sub-folder of each defect folder that holds the images ("rgb" for MVTec 3D).
        mask_suffix: suffix of mask file stems (a mask is ``<stem><mask_suffix>.png``).
    """
    split_root = category_root / split
    if not split_root.is_dir():
        return []
    samples: list[Sample] = []
    for defect_dir in sorted(p for p in split_root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        defect = defect_dir.name
        label = 0 if defect == "good" else 1
        masks = mask_root(defect) if label == 1 else None
        for image_path in list_images(defect_dir / image_subdir):
            mask_path = None
            if masks is not None and masks.is_dir():
                candidates = [
                    masks / f"{image_path.stem}{mask_suffix}{ext}" for ext in (".png", image_path.suffix)
                ]
                mask_path = next((m for m in candidates if m.is_file()), None)
            samples.append(Sample(image_path, label, mask_path, defect))
    return samples


class MVTecAD(AnomalyDataModule):
    """MVTec AD (Bergmann et al., CVPR 2019): 15 categories in the official layout.

    ``root/<category>/{train/good, test/<defect>, ground_truth/<defect>/<stem>_mask.png}``.
    Get it with ``adbench data download mvtec --root <root>`` (5.3 GB, sha256-checked).
    """

    dataset_name = "mvtec"
    categories = MVTEC_AD_CATEGORIES

    def download_hint(self) -> str:
        return f"download it with `adbench data download mvtec --root {self.root}`"

    def list_samples(self, split: str) -> list[Sample]:
        return mvtec_layout_samples(
            self.category_root, split, lambda d: self.category_root / "ground_truth" / d
        )


class MVTec3D(AnomalyDataModule):
    """MVTec 3D-AD (Bergmann et al., VISAPP 2022), RGB images and masks only.

    ``root/<category>/{train/good/rgb, test/<defect>/rgb, test/<defect>/gt}``; mask files share the image name.
    Get it with ``adbench data download mvtec3d --root <root>`` (md5-checked: the only checksum published).
    """

    dataset_name = "mvtec3d"
    categories = MVTEC_3D_CATEGORIES

    def download_hint(self) -> str:
        return f"download it with `adbench data download mvtec3d --root {self.root}`"

    def list_samples(self, split: str) -> list[Sample]:
        return mvtec_layout_samples(
            self.category_root, split, lambda d: self.category_root / split / d / "gt", "rgb", mask_suffix=""
        )


class Folder(AnomalyDataModule):
    """Any dataset in the MVTec AD layout: ``root/<category>/{train/good, test/<defect>, ground_truth/<defect>}``.

    Defect folders without a ground-truth folder give image-level labels only (pixel metrics are skipped).
    Any category name is accepted; ``name`` labels the dataset in logs and result tables.

    Args:
        name: dataset name for loggers and result tables.
        mask_suffix: suffix of mask file stems (``_mask`` as in MVTec AD; "" when masks share the image name).
    """

    def __init__(self, *args, name: str = "folder", mask_suffix: str = "_mask", **kwargs) -> None:
        self.dataset_name = name
        self.mask_suffix = mask_suffix
        super().__init__(*args, **kwargs)

    def download_hint(self) -> str:
        return (
            "expected an MVTec-style tree <root>/<category>/train/good; check --data.root and --data.category"
        )

    def list_samples(self, split: str) -> list[Sample]:
        return mvtec_layout_samples(
            self.category_root,
            split,
            lambda d: self.category_root / "ground_truth" / d,
            mask_suffix=self.mask_suffix,
        )
