"""AnomalyDataModule: the shared split, transform and loader logic of every datamodule."""

from __future__ import annotations

import warnings
from pathlib import Path

import albumentations as A
import torch
from lightning import LightningDataModule
from torch.utils.data import DataLoader

from adbench.data.batch import Batch
from adbench.data.dataset import AnomalyDataset, Sample, check_mask_sizes
from adbench.data.sampler import EpochSeededSampler
from adbench.data.transforms import IMAGENET_MEAN, IMAGENET_STD, ImageMaskTransform
from adbench.errors import DataError


class AnomalyDataModule(LightningDataModule):
    """Base datamodule: subclasses list their samples, this class splits, transforms and loads them.

    The validation split is a seeded fraction of the normal training images (never test images), used for
    the validation loss and for fitting thresholds or normalization statistics.

    Args:
        root: dataset folder.
        category: category (sub-folder) to use.
        image_size: images are resized to this size (int or (height, width)).
        center_crop: optional center crop after resizing (int or (height, width)).
        mean: normalization mean; must match the backbone's pretrained weights.
        std: normalization std; must match the backbone's pretrained weights.
        batch_size: training batch size.
        eval_batch_size: validation/test/predict batch size (defaults to ``batch_size``).
        num_workers: data-loading worker processes.
        val_split: fraction of the normal training images held out for validation (0 disables).
        seed: seed of the validation split and of the training shuffle (resumed fits shuffle alike).
        train_augmentations: albumentations transforms applied to training images only, e.g.
            ``[{class_path: albumentations.HorizontalFlip, init_args: {p: 0.5}}]``.
        held_out_anomalies: anomalous test images (of this category, with their masks) taken out of the test
            split and never evaluated on: drawn with ``seed``, spread over the defect types (one of each type
            in turn). Give every model of a comparison the same value so that all are tested on the same images.
        train_on_held_out: add the held-out anomalies to the training split as labelled anomalies (ADTR+'s
            anomaly-available case with real defects); False only removes them from the test split.
    """

    dataset_name: str = "dataset"
    categories: tuple[str, ...] | None = None

    def __init__(
        self,
        root: str | Path,
        category: str,
        image_size: int | tuple[int, int] = 256,
        center_crop: int | tuple[int, int] | None = None,
        mean: tuple[float, float, float] = IMAGENET_MEAN,
        std: tuple[float, float, float] = IMAGENET_STD,
        batch_size: int = 16,
        eval_batch_size: int | None = None,
        num_workers: int = 4,
        val_split: float = 0.1,
        seed: int = 0,
        train_augmentations: list[A.BasicTransform] | None = None,
        held_out_anomalies: int = 0,
        train_on_held_out: bool = False,
    ) -> None:
        super().__init__()
        self.root = Path(root).expanduser()
        self.category = category
        self.image_size = image_size
        self.center_crop = center_crop
        self.mean = tuple(mean)
        self.std = tuple(std)
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers = num_workers
        if not 0.0 <= val_split < 1.0:
            raise DataError(f"val_split must be in [0, 1), got {val_split}")
        self.val_split = val_split
        self.seed = seed
        self.train_augmentations = list(train_augmentations or [])
        if held_out_anomalies < 0:
            raise DataError(f"held_out_anomalies must be >= 0, got {held_out_anomalies}")
        self.held_out_anomalies = held_out_anomalies
        self.train_on_held_out = train_on_held_out
        self._datasets: dict[str, AnomalyDataset] = {}
        self._check_category()

    # ----------------------------------------------------------------------------------------------- subclass API
    def download_hint(self) -> str:
        """How to get the data, appended to a missing-root error."""
        return "check --data.root"

    def list_samples(self, split: str) -> list[Sample]:
        """All samples of ``split`` ("train" or "test") under ``self.category_root``."""
        raise NotImplementedError

    # ------------------------------------------------------------------------------------------------- shared logic
    @property
    def category_root(self) -> Path:
        return self.root / self.category

    @property
    def has_pixel_labels(self) -> bool:
        """True when every anomalous test image has a ground-truth mask (pixel metrics are meaningful)."""
        test = self._datasets.get("test")
        if test is None:
            return True
        return all(s.mask_path is not None for s in test.samples if s.label == 1)

    def _check_category(self) -> None:
        if self.categories is not None and self.category not in self.categories:
            raise DataError(
                f"unknown {self.dataset_name} category {self.category!r}; valid: {', '.join(self.categories)}"
            )

    def _check_root(self) -> None:
        if not self.category_root.is_dir():
            raise DataError(
                f"{self.dataset_name} data not found at {self.category_root}: {self.download_hint()}"
            )

    def _split_train_val(self, normals: list[Sample]) -> tuple[list[Sample], list[Sample]]:
        if self.val_split == 0 or len(normals) < 2:
            return normals, []
        generator = torch.Generator().manual_seed(self.seed)
        order = torch.randperm(len(normals), generator=generator).tolist()
        n_val = max(1, round(self.val_split * len(normals)))
        val_ids = set(order[:n_val])
        train = [s for i, s in enumerate(normals) if i not in val_ids]
        val = [s for i, s in enumerate(normals) if i in val_ids]
        return train, val

    def _transform(self, train: bool) -> ImageMaskTransform:
        return ImageMaskTransform(
            self.image_size,
            self.center_crop,
            self.mean,
            self.std,
            self.train_augmentations if train else (),
        )

    def train_samples(self) -> list[Sample]:
        """Training samples; by default the normal ones (subclasses may add labelled anomalies)."""
        return [s for s in self.list_samples("train") if s.label == 0]

    def _hold_out(self, test: list[Sample]) -> tuple[list[Sample], list[Sample]]:
        """Splits ``held_out_anomalies`` anomalous samples off ``test``: (remaining test, held out).

        Each defect type's anomalies are shuffled with ``seed``; the types then give one image each in turn
        (in name order) until ``held_out_anomalies`` are taken.

        Raises:
            DataError: the test split has fewer anomalies than ``held_out_anomalies``, or would keep none.
        """
        if self.held_out_anomalies == 0:
            return test, []
        anomalies = [s for s in test if s.label == 1]
        if self.held_out_anomalies >= len(anomalies):
            raise DataError(
                f"held_out_anomalies={self.held_out_anomalies} but the test split under {self.category_root} has "
                f"{len(anomalies)} anomalous images; hold out fewer so that some remain to evaluate on"
            )
        generator = torch.Generator().manual_seed(self.seed)
        queues = []
        for defect in sorted({s.defect for s in anomalies}):
            of_defect = [s for s in anomalies if s.defect == defect]
            queues.append(
                [of_defect[i] for i in torch.randperm(len(of_defect), generator=generator).tolist()]
            )
        held: list[Sample] = []
        while len(held) < self.held_out_anomalies:
            for queue in queues:
                if queue and len(held) < self.held_out_anomalies:
                    held.append(queue.pop(0))
        taken = {s.image_path for s in held}
        return [s for s in test if s.image_path not in taken], held

    def setup(self, stage: str | None = None) -> None:
        if self._datasets:
            return
        self._check_root()
        train_all = self.train_samples()
        normals = [s for s in train_all if s.label == 0]
        if stage in (None, "fit", "validate") and not normals:
            raise DataError(f"no normal training images found under {self.category_root}; the split is empty")
        train, val = self._split_train_val(normals)
        train += [s for s in train_all if s.label == 1]
        test, held_out = self._hold_out(self.list_samples("test"))
        if self.train_on_held_out:
            check_mask_sizes(held_out)
            train += held_out
        if stage in (None, "test", "predict") and not test:
            raise DataError(f"no test images found under {self.category_root}; the split is empty")
        check_mask_sizes(test)
        missing = [s for s in test if s.label == 1 and s.mask_path is None]
        if missing and len(missing) < sum(s.label == 1 for s in test):
            warnings.warn(
                f"{len(missing)} anomalous test images under {self.category_root} have no mask (e.g. "
                f"{missing[0].image_path}); pixel metrics are skipped for this split",
                stacklevel=2,
            )
        self._datasets = {
            "train": AnomalyDataset(train, self._transform(train=True)),
            "val": AnomalyDataset(val, self._transform(train=False)),
            "test": AnomalyDataset(test, self._transform(train=False)),
        }

    def dataset(self, split: str) -> AnomalyDataset:
        """The dataset of ``split`` ("train", "val", "test"); calls ``setup`` when needed."""
        if not self._datasets:
            self.setup()
        return self._datasets[split]

    def _loader(self, split: str, shuffle: bool, batch_size: int) -> DataLoader:
        workers = self.num_workers
        dataset = self.dataset(split)
        return DataLoader(
            dataset,
            batch_size=batch_size,
            sampler=EpochSeededSampler(dataset, self.seed) if shuffle else None,
            num_workers=workers,
            collate_fn=Batch.collate,
            persistent_workers=workers > 0,
            pin_memory=torch.cuda.is_available(),
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True, batch_size=self.batch_size)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False, batch_size=self.eval_batch_size)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False, batch_size=self.eval_batch_size)

    def predict_dataloader(self) -> DataLoader:
        return self.test_dataloader()

    def describe(self) -> dict[str, str]:
        """Names that identify the run: dataset and category (for loggers and result tables)."""
        return {"dataset": self.dataset_name, "category": self.category}
