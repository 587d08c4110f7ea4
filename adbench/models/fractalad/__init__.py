"""FractalAD: fractal anomaly generation and backbone knowledge distillation."""

from adbench.models.fractalad.lightning_module import FractalAD
from adbench.models.fractalad.torch_model import FractalADModel

__all__ = ["FractalAD", "FractalADModel"]
