"""InTra: Inpainting Transformer for anomaly detection (Pirnay & Chai, 2021)."""

from adbench.models.intra.lightning_module import InTra
from adbench.models.intra.torch_model import GMSAnomalyMap, InTraModel

__all__ = ["GMSAnomalyMap", "InTra", "InTraModel"]
