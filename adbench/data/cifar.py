"""CIFAR-10 one-class protocol (+ CIFAR-100 auxiliary anomalies), read through torchvision's CIFAR classes.

Protocol (ADTR paper Sec. 4.1, following KDAD): train on one class's 5000 training images; test on that
class's 1000 test images plus as many test images sampled (seeded) from the other nine classes. In the
anomaly-available case, as many CIFAR-100 training images as the class has training images (5000), sampled
with the same seed, join the training split as anomalies with image-level labels (no masks).

Images are 32x32 arrays held in memory (no files), resized to ``image_size`` by the shared transform. There
are no pixel labels: masks are all zero and ``has_pixel_labels`` is False, so pixel metrics are skipped.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision.datasets import CIFAR10, CIFAR100

from adbench.data.base import AnomalyDataModule
from adbench.data.dataset import Sample
from adbench.data.download import DownloadInfo, download_and_extract
from adbench.data.transforms import ImageMaskTransform
from adbench.errors import ConfigError, DataError

CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip


class _UncheckedCIFAR10(CIFAR10):
    """torchvision's CIFAR-10 without the md5 checks of its pickles (only their presence is checked)."""

    train_list = [[name, None] for name, _ in CIFAR10.train_list]
    test_list = [[name, None] for name, _ in CIFAR10.test_list]
    meta = {**CIFAR10.meta, "md5": None}


class _UncheckedCIFAR100(CIFAR100):
    """torchvision's CIFAR-100 without the md5 checks of its pickles (only their presence is checked)."""

    train_list = [[name, None] for name, _ in CIFAR100.train_list]
    test_list = [[name, None] for name, _ in CIFAR100.test_list]
    meta = {**CIFAR100.meta, "md5": None}


class ArrayDataset(Dataset):
    """In-memory images with labels, yielding the same per-sample dict as ``AnomalyDataset``.

    Args:
        images: (N, H, W, 3) uint8.
        labels: (N,) 0 normal / 1 anomalous.
        names: N unique names used as ``path`` (e.g. ``cifar10/test/123``).
        transform: the joint image/mask transform (``ImageMaskTransform``).
    """

    def __init__(
        self, images: np.ndarray, labels: np.ndarray, names: list[str], transform: ImageMaskTransform
    ):
        if not len(images) == len(labels) == len(names):
            raise ValueError(
                f"images, labels and names differ in length: {len(images)}, {len(labels)}, {len(names)}"
            )
        self.images = images
        self.labels = np.asarray(labels, dtype=np.int64)
        self.names = list(names)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict:
        image = np.ascontiguousarray(self.images[index])
        mask = np.zeros(image.shape[:2], dtype=np.float32)
        image_tensor, mask_tensor = self.transform(image, mask)
        return {
            "image": image_tensor,
            "label": int(self.labels[index]),
            "mask": mask_tensor,
            "path": self.names[index],
            "index": index,
        }


def _seeded_choice(count: int, size: int, seed: int) -> np.ndarray:
    """``size`` distinct indices of ``range(count)`` drawn with a seeded torch generator (sorted)."""
    if size > count:
        raise DataError(f"cannot sample {size} images from {count}")
    order = torch.randperm(count, generator=torch.Generator().manual_seed(seed))[:size]
    return np.sort(order.numpy())


class CIFAR10OneClass(AnomalyDataModule):
    """CIFAR-10 one-class anomaly detection, optionally with CIFAR-100 images as auxiliary training anomalies.

    ``root`` holds torchvision's extracted folders ``cifar-10-batches-py`` (and ``cifar-100-python`` for
    auxiliary anomalies). ``download: true`` fetches the official archives (md5-checked, safely extracted).
    The normal class is ``normal_class`` (or ``category``, the name the benchmark runner sets): a class name
    or an index 0-9. ``seed`` (of the base class) seeds the validation split, the sampled test anomalies and
    the sampled auxiliary anomalies: one seed gives one fixed split.

    Args:
        root: folder holding ``cifar-10-batches-py`` / ``cifar-100-python``.
        normal_class: the normal class, name (``airplane``) or index (0-9); same as ``category``.
        category: the normal class by name (or index as text); set by ``adbench benchmark``, used in run
            names.
        auxiliary_anomalies: add CIFAR-100 training images (as many as the normal class's training images) to
            the training split as anomalies with image-level labels.
        download: download the archives into ``root`` when the folders are missing.
        verify_checksums: check torchvision's md5s of the pickles (false only for a locally made tree).
        image_size: the 32x32 images are resized to this size.
    """

    dataset_name = "cifar10"
    categories = CIFAR10_CLASSES

    def __init__(
        self,
        root: str | Path = "./datasets/cifar",
        normal_class: int | str | None = None,
        category: int | str | None = None,
        auxiliary_anomalies: bool = False,
        download: bool = False,
        verify_checksums: bool = True,
        image_size: int | tuple[int, int] = 32,
        **kwargs,
    ) -> None:
        name = self._class_name(normal_class, category)
        self.normal_class = CIFAR10_CLASSES.index(name)
        self.auxiliary_anomalies = auxiliary_anomalies
        self.download = download
        self.verify_checksums = verify_checksums
        super().__init__(root=root, category=name, image_size=image_size, **kwargs)

    @staticmethod
    def _class_name(normal_class: int | str | None, category: int | str | None) -> str:
        names = []
        for value in (normal_class, category):
            if value is None:
                continue
            text = str(value).strip()
            if text.isdigit():
                if not 0 <= int(text) < len(CIFAR10_CLASSES):
                    raise DataError(f"CIFAR-10 class index {text} is out of range 0-9")
                text = CIFAR10_CLASSES[int(text)]
            if text not in CIFAR10_CLASSES:
                raise DataError(
                    f"unknown CIFAR-10 class {value!r}; valid: {', '.join(CIFAR10_CLASSES)} or 0-9"
                )
            names.append(text)
        if len(set(names)) > 1:
            raise ConfigError(
                f"normal_class {normal_class!r} and category {category!r} name different classes"
            )
        return names[0] if names else CIFAR10_CLASSES[0]

    # --------------------------------------------------------------------------------------------- reading
    @property
    def category_root(self) -> Path:
        return self.root / CIFAR10.base_folder

    @property
    def has_pixel_labels(self) -> bool:
        """CIFAR has image labels only: pixel metrics are skipped."""
        return False

    def download_hint(self) -> str:
        return (
            f"set --data.init_args.download=true to download it into {self.root}, or point root at its folder"
        )

    def list_samples(self, split: str) -> list[Sample]:
        """CIFAR images live in memory, not in files: there are no file samples."""
        return []

    def _load(self, cls: type[CIFAR10], train: bool) -> tuple[np.ndarray, np.ndarray]:
        """(images (N, 32, 32, 3) uint8, class ids (N,)) of one torchvision CIFAR split."""
        folder = self.root / cls.base_folder
        name = "CIFAR-10" if cls is CIFAR10 else "CIFAR-100"
        files = [f for f, _ in cls.train_list + cls.test_list] + [cls.meta["filename"]]
        missing = [f for f in files if not (folder / f).is_file()]
        if missing and self.download:
            info = DownloadInfo(name=name, url=cls.url, checksum=cls.tgz_md5)
            download_and_extract(info, self.root)
            missing = [f for f in files if not (folder / f).is_file()]
        if missing:
            raise DataError(
                f"{name} data not found at {folder} (missing {missing[0]}): {self.download_hint()}"
            )
        reader = cls
        if not self.verify_checksums:
            reader = _UncheckedCIFAR10 if cls is CIFAR10 else _UncheckedCIFAR100
        try:
            dataset = reader(str(self.root), train=train, download=False)
        except RuntimeError as error:
            raise DataError(
                f"{name} files under {folder} fail torchvision's md5 check ({error}); delete the folder and "
                "download again (--data.init_args.download=true)"
            ) from None
        except (OSError, EOFError, KeyError, ValueError, TypeError) as error:
            raise DataError(
                f"cannot read {name} files under {folder}: {error}; delete and download again"
            ) from None
        return np.asarray(dataset.data, dtype=np.uint8), np.asarray(dataset.targets, dtype=np.int64)

    # --------------------------------------------------------------------------------------------- splits
    def setup(self, stage: str | None = None) -> None:
        if self._datasets:
            return
        if self.held_out_anomalies:
            raise ConfigError(
                "CIFAR10OneClass does not support held_out_anomalies (its test anomalies are images of the other "
                "classes); use auxiliary_anomalies for labelled training anomalies"
            )
        train_images, train_classes = self._load(CIFAR10, train=True)
        test_images, test_classes = self._load(CIFAR10, train=False)
        c = self.normal_class
        normal_train = np.flatnonzero(train_classes == c)
        if len(normal_train) == 0:
            raise DataError(
                f"no CIFAR-10 training images of class {self.category} under {self.category_root}"
            )
        train_ids, val_ids = self._split_train_val(normal_train.tolist())

        normal_test = np.flatnonzero(test_classes == c)
        others = np.flatnonzero(test_classes != c)
        anomalous_test = others[_seeded_choice(len(others), min(len(normal_test), len(others)), self.seed)]
        test_ids = np.concatenate([normal_test, anomalous_test])
        test_labels = np.concatenate([np.zeros(len(normal_test)), np.ones(len(anomalous_test))])

        images = [train_images[train_ids]]
        labels = [np.zeros(len(train_ids))]
        names = [f"cifar10/train/{i}" for i in train_ids]
        if self.auxiliary_anomalies:
            aux_images, _ = self._load(CIFAR100, train=True)
            aux_ids = _seeded_choice(len(aux_images), min(len(normal_train), len(aux_images)), self.seed + 1)
            images.append(aux_images[aux_ids])
            labels.append(np.ones(len(aux_ids)))
            names += [f"cifar100/train/{i}" for i in aux_ids]

        self._datasets = {
            "train": ArrayDataset(
                np.concatenate(images), np.concatenate(labels), names, self._transform(True)
            ),
            "val": ArrayDataset(
                train_images[val_ids],
                np.zeros(len(val_ids)),
                [f"cifar10/train/{i}" for i in val_ids],
                self._transform(False),
            ),
            "test": ArrayDataset(
                test_images[test_ids],
                test_labels,
                [f"cifar10/test/{i}" for i in test_ids],
                self._transform(False),
            ),
        }

    def describe(self) -> dict[str, str]:
        return {"dataset": self.dataset_name, "category": self.category}
