"""DSR: dual subspace re-projection network (quantized-latent reconstruction with feature-space anomalies)."""

from adbench.models.dsr.lightning_module import DSR, DSRStage1
from adbench.models.dsr.torch_model import VQVAE, DSRModel

__all__ = ["DSR", "DSRModel", "DSRStage1", "VQVAE"]
