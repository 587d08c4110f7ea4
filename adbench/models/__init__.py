"""Detectors: each a subclass of AnomalyModule."""

from adbench.models.adtr import ADTR
from adbench.models.adtr_plus import ADTRPlus
from adbench.models.base import AnomalyModule
from adbench.models.dsr import DSR, DSRStage1
from adbench.models.fractalad import FractalAD
from adbench.models.intra import InTra
from adbench.models.patchcore import PatchCore

__all__ = ["ADTR", "ADTRPlus", "AnomalyModule", "DSR", "DSRStage1", "FractalAD", "InTra", "PatchCore"]
