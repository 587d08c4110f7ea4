"""ImageFolder: every image under a folder, all normal, for self-supervised pre-training (DSR stage 1)."""

from __future__ import annotations

from pathlib import Path

from adbench.data.base import AnomalyDataModule
from adbench.data.dataset import Sample
from adbench.data.image_io import IMAGE_SUFFIXES


class ImageFolder(AnomalyDataModule):
    """All images found recursively under ``root`` (or ``root/category``), every one labelled normal.

    Meant for stages that learn general appearance from any photographs, e.g. DSR's stage 1 on ImageNet
    (``root: .../ILSVRC/Data/CLS-LOC/train``) or on the normal training images of an MVTec-style tree
    (``pattern: "*/train/good/*"``). Class sub-folders, if any, are ignored. The validation split is the usual
    seeded fraction; the test split is the validation images (or all images when ``val_split`` is 0): it holds
    no anomalies, so image and pixel metrics of a test run are undefined (NaN).

    Args:
        root: the folder.
        category: optional sub-folder of ``root`` to use instead (None: ``root`` itself).
        pattern: glob of the images relative to the folder; ``"**/*"`` takes every image at any depth.
        name: dataset name for loggers and result tables.
        use_category: False reads ``root`` itself whatever ``category`` says (reported as category ``all``):
            a stage that learns from every category's images (DSR stage 1 on ImageNet, or on the normals of
            all categories) inside a benchmark cell, which sets the category of every stage.
    """

    def __init__(
        self,
        *args,
        root: str | Path,
        category: str | None = None,
        pattern: str = "**/*",
        name: str = "image_folder",
        use_category: bool = True,
        **kwargs,
    ) -> None:
        self.dataset_name = name
        self.pattern = pattern
        self._images: list[Path] | None = None
        super().__init__(*args, root=root, category=(category or "") if use_category else "", **kwargs)

    @property
    def category_root(self) -> Path:
        return self.root / self.category if self.category else self.root

    def download_hint(self) -> str:
        return "expected a folder of images; check --data.init_args.root (and category / pattern)"

    def images(self) -> list[Path]:
        """Image files matching ``pattern`` under the folder, sorted (hidden files and folders skipped)."""
        if self._images is None:
            base = self.category_root
            self._images = sorted(
                p
                for p in base.glob(self.pattern)
                if p.suffix.lower() in IMAGE_SUFFIXES
                and p.is_file()
                and not any(part.startswith(".") for part in p.relative_to(base).parts)
            )
        return self._images

    def list_samples(self, split: str) -> list[Sample]:
        normals = [Sample(path, 0) for path in self.images()]
        if split == "train":
            return normals
        if split == "test":
            _, val = self._split_train_val(normals)
            return val or normals
        return []

    def describe(self) -> dict[str, str]:
        return {"dataset": self.dataset_name, "category": self.category or "all"}
