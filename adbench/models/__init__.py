"""Detectors: each a subclass of AnomalyModule."""

from adbench.models.adtr import ADTR
from adbench.models.base import AnomalyModule

__all__ = ["ADTR", "AnomalyModule"]
