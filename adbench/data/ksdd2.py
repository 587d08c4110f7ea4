"""KolektorSDD2 (Božič et al., 2021): surface defects from a real production line."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from adbench.data.base import AnomalyDataModule
from adbench.data.dataset import Sample
from adbench.data.image_io import list_images, read_mask


@cache
def _has_defect(mask_path: Path) -> bool:
    return bool(read_mask(mask_path).any())


class KSDD2(AnomalyDataModule):
    """KSDD2 in its published layout: ``root/{train,test}/<id>.png`` with ``<id>_GT.png`` masks.

    An image is anomalous when its mask has any defect pixel. The train split holds 2085 normal and 246
    anomalous images; the unsupervised setting (the default) trains on the normal ones only, as DSR does.
    Download the archive from the authors' page (ViCoS, University of Ljubljana, "KolektorSDD2") and unpack
    it so that ``root/train`` and ``root/test`` exist; KSDD2 has one category, named ``ksdd2``.

    Args:
        use_anomalous_train: also train on the 246 labelled anomalous training images (supervised setting).
    """

    dataset_name = "ksdd2"
    categories = ("ksdd2",)

    def __init__(self, *args, category: str = "ksdd2", use_anomalous_train: bool = False, **kwargs) -> None:
        self.use_anomalous_train = use_anomalous_train
        super().__init__(*args, category=category, **kwargs)

    @property
    def category_root(self) -> Path:
        return self.root

    def download_hint(self) -> str:
        return (
            "download KolektorSDD2 from its authors (ViCoS, University of Ljubljana) and unpack it so that "
            f"{self.root}/train and {self.root}/test exist"
        )

    def list_samples(self, split: str) -> list[Sample]:
        samples = []
        for path in list_images(self.root / split):
            if path.stem.endswith("_GT"):
                continue
            mask = path.with_name(f"{path.stem}_GT.png")
            if not mask.is_file():
                continue
            samples.append(
                Sample(path, int(_has_defect(mask)), mask, "defect" if _has_defect(mask) else "good")
            )
        return samples

    def train_samples(self) -> list[Sample]:
        samples = self.list_samples("train")
        return samples if self.use_anomalous_train else [s for s in samples if s.label == 0]
