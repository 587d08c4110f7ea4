"""Real labelled anomalies from a folder, added to the training split (ADTR+'s anomaly-available case).

A user with a few real defects puts them in a folder (flat, or one sub-folder per defect type) and, when
they have them, their masks in a second folder that mirrors it: ``<mask_dir>/<same sub-folder>/<stem>_mask.png``
(or ``<stem>.png`` with ``anomaly_mask_suffix: ""``). Images with a mask give pixel labels; images without
one give an image-level label (their mask stays all zero, which a model reads as "image label only").

``MVTecADWithAnomalies``, ``FolderWithAnomalies`` and ``DemoWithAnomalies`` are the usual datamodules with
three more options (``anomaly_dir``, ``anomaly_mask_dir``, ``anomaly_mask_suffix``); the anomalies join the
training split only (never validation), and an anomaly that is also a test image is refused.
"""

from __future__ import annotations

from pathlib import Path

from adbench.data.dataset import Sample, check_mask_sizes
from adbench.data.demo import Demo
from adbench.data.image_io import IMAGE_SUFFIXES, list_images
from adbench.data.mvtec import Folder, MVTecAD
from adbench.errors import DataError


def labelled_anomaly_samples(
    image_dir: str | Path, mask_dir: str | Path | None = None, mask_suffix: str = "_mask"
) -> list[Sample]:
    """Anomalous samples (label 1) from ``image_dir`` and its direct sub-folders, with masks where present.

    Args:
        image_dir: folder of anomalous images; each direct sub-folder is one defect type ("anomaly" for the
            images directly inside).
        mask_dir: folder mirroring ``image_dir`` with masks ``<stem><mask_suffix>.png`` (or the image's own
            suffix); None: image-level labels only.
        mask_suffix: suffix of mask file stems.

    Returns:
        The samples, sorted by defect then file name.

    Raises:
        DataError: ``image_dir`` (or a given ``mask_dir``) is missing, holds no image, or a mask's size
            differs from its image's.
    """
    image_dir = Path(image_dir).expanduser()
    if not image_dir.is_dir():
        raise DataError(f"anomaly folder {image_dir} does not exist; check --data.init_args.anomaly_dir")
    masks = Path(mask_dir).expanduser() if mask_dir is not None else None
    if masks is not None and not masks.is_dir():
        raise DataError(
            f"anomaly mask folder {masks} does not exist; check --data.init_args.anomaly_mask_dir"
        )
    folders = [(image_dir, "anomaly", masks)]
    for sub in sorted(p for p in image_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
        folders.append((sub, sub.name, masks / sub.name if masks is not None else None))
    samples: list[Sample] = []
    for folder, defect, mask_folder in folders:
        for image_path in list_images(folder):
            mask_path = None
            if mask_folder is not None:
                candidates = [
                    mask_folder / f"{image_path.stem}{mask_suffix}{ext}"
                    for ext in (".png", image_path.suffix)
                ]
                mask_path = next(
                    (m for m in candidates if m.is_file() and m.suffix.lower() in IMAGE_SUFFIXES), None
                )
            samples.append(Sample(image_path, 1, mask_path, defect))
    if not samples:
        raise DataError(f"anomaly folder {image_dir} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    check_mask_sizes(samples)
    return samples


class LabelledAnomaliesMixin:
    """Adds the labelled anomalies of a folder to an ``AnomalyDataModule``'s training split.

    Put it before the datamodule class: ``class X(LabelledAnomaliesMixin, MVTecAD)``.

    Args:
        anomaly_dir: folder of real anomalous training images (flat or one sub-folder per defect); None adds
            nothing.
        anomaly_mask_dir: folder mirroring ``anomaly_dir`` with their masks; images without a mask get an
            image-level label only.
        anomaly_mask_suffix: suffix of mask file stems (``_mask`` as in MVTec AD; "" when masks share the
            image name).
    """

    def __init__(
        self,
        *args,
        anomaly_dir: str | Path | None = None,
        anomaly_mask_dir: str | Path | None = None,
        anomaly_mask_suffix: str = "_mask",
        **kwargs,
    ) -> None:
        self.anomaly_dir = anomaly_dir
        self.anomaly_mask_dir = anomaly_mask_dir
        self.anomaly_mask_suffix = anomaly_mask_suffix
        super().__init__(*args, **kwargs)

    def train_samples(self) -> list[Sample]:
        """The datamodule's normal training samples plus the labelled anomalies (label 1)."""
        samples = super().train_samples()
        if self.anomaly_dir is None:
            return samples
        anomalies = labelled_anomaly_samples(
            self.anomaly_dir, self.anomaly_mask_dir, self.anomaly_mask_suffix
        )
        test_images = {s.image_path.resolve() for s in self.list_samples("test")}
        leaked = [s.image_path for s in anomalies if s.image_path.resolve() in test_images]
        if leaked:
            raise DataError(
                f"training anomaly {leaked[0]} (and {len(leaked) - 1} more) is a test image of "
                f"{self.category_root}; training anomalies must not come from the test split"
            )
        return samples + anomalies


class MVTecADWithAnomalies(LabelledAnomaliesMixin, MVTecAD):
    """MVTec AD with real labelled anomalies from ``anomaly_dir`` in the training split."""


class FolderWithAnomalies(LabelledAnomaliesMixin, Folder):
    """Any MVTec-layout dataset with real labelled anomalies from ``anomaly_dir`` in the training split."""


class DemoWithAnomalies(LabelledAnomaliesMixin, Demo):
    """The demo set with labelled anomalies from ``anomaly_dir`` in the training split."""
