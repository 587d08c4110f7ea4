"""PatchCore: nearest neighbours in a coreset of pretrained patch features (the reference detector)."""

from adbench.models.patchcore.lightning_module import PatchCore
from adbench.models.patchcore.torch_model import PatchCoreModel, PatchCoreOutput

__all__ = ["PatchCore", "PatchCoreModel", "PatchCoreOutput"]
