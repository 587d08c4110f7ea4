"""Datamodules that yield the Batch contract, and the anomaly generators several models share."""

from adbench.data.base import AnomalyDataModule
from adbench.data.batch import Batch
from adbench.data.demo import Demo
from adbench.data.ksdd2 import KSDD2
from adbench.data.mvtec import MVTEC_3D_CATEGORIES, MVTEC_AD_CATEGORIES, Folder, MVTec3D, MVTecAD

__all__ = [
    "AnomalyDataModule",
    "Batch",
    "Demo",
    "Folder",
    "KSDD2",
    "MVTEC_3D_CATEGORIES",
    "MVTEC_AD_CATEGORIES",
    "MVTec3D",
    "MVTecAD",
]
