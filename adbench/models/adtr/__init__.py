"""ADTR: anomaly detection transformer with feature reconstruction."""

from adbench.models.adtr.lightning_module import ADTR
from adbench.models.adtr.torch_model import ADTRModel

__all__ = ["ADTR", "ADTRModel"]
