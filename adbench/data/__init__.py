"""Datamodules that yield the Batch contract, and the anomaly generators several models share."""

from adbench.data.base import AnomalyDataModule
from adbench.data.batch import Batch
from adbench.data.cifar import CIFAR10OneClass
from adbench.data.demo import Demo
from adbench.data.image_folder import ImageFolder
from adbench.data.ksdd2 import KSDD2
from adbench.data.labelled_anomalies import DemoWithAnomalies, FolderWithAnomalies, MVTecADWithAnomalies
from adbench.data.mvtec import MVTEC_3D_CATEGORIES, MVTEC_AD_CATEGORIES, Folder, MVTec3D, MVTecAD

__all__ = [
    "AnomalyDataModule",
    "Batch",
    "CIFAR10OneClass",
    "Demo",
    "DemoWithAnomalies",
    "Folder",
    "FolderWithAnomalies",
    "ImageFolder",
    "KSDD2",
    "MVTecADWithAnomalies",
    "MVTEC_3D_CATEGORIES",
    "MVTEC_AD_CATEGORIES",
    "MVTec3D",
    "MVTecAD",
]
