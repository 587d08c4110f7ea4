"""Starting ADTR+ from a normal-only ADTR checkpoint (the paper loads the normal-only model first)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from adbench.errors import ConfigError
from adbench.models.components.feature_pyramid import LEGACY_FEATURE_RESIZE

#: Checkpoints of these models hold an ``ADTRModel`` under ``model.`` (ADTR+ may also chain from ADTR+).
ACCEPTED_MODELS = ("adtr", "adtr_plus")

#: Hyper-parameters that fix the shapes of ``ADTRModel``; they must agree with the checkpoint's.
ARCHITECTURE_KEYS = (
    "backbone", "layers", "feature_size", "hidden_dim", "num_encoder_layers", "num_decoder_layers", "heads",
    "mlp_dim", "learned_queries", "reconstruction", "feature_resize",
)  # fmt: skip


def read_adtr_checkpoint(path: str | Path) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Reads the ``model.*`` weights and hyper-parameters of an ADTR (or ADTR+) Lightning checkpoint.

    Loads with ``torch.load(weights_only=True)``: no code from the file is run.

    Args:
        path: the checkpoint file (e.g. ``.../checkpoints/last.ckpt`` of an ``adbench fit`` of ADTR).

    Returns:
        The ``ADTRModel`` state dict (prefix ``model.`` removed) and the checkpoint's hyper-parameters.

    Raises:
        ConfigError: the file is missing, unreadable, or not an ADTR checkpoint.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise ConfigError(
            f"init_from checkpoint {path} does not exist: train ADTR first (e.g. `adbench fit --config "
            "configs/adtr_demo.yaml`) and pass its last.ckpt, or set init_from: null to train from scratch"
        )
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - any unpickling failure means "not a checkpoint we can read"
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ConfigError(
            f"init_from checkpoint {path} cannot be read as a weights-only torch checkpoint ({first}); "
            "pass the last.ckpt of an ADTR fit"
        ) from None
    state = checkpoint.get("state_dict") if isinstance(checkpoint, Mapping) else None
    if not isinstance(state, Mapping):
        raise ConfigError(
            f"init_from checkpoint {path} has no state_dict: it is not a Lightning checkpoint of ADTR"
        )
    name = (checkpoint.get("adbench") or {}).get("model_name")
    weights = {k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")}
    looks_like_adtr = any(k.startswith("encoder.") for k in weights) and "input_proj.weight" in weights
    if (name is not None and name not in ACCEPTED_MODELS) or not looks_like_adtr:
        raise ConfigError(
            f"init_from checkpoint {path} is a checkpoint of {name or 'another model'}, not of ADTR; "
            "pass the last.ckpt of an ADTR fit"
        )
    return weights, dict(checkpoint.get("hyper_parameters") or {})


def check_architecture(path: str | Path, saved: Mapping[str, Any], wanted: Mapping[str, Any]) -> None:
    """Raises ConfigError naming every shape-defining hyper-parameter that differs from the checkpoint's.

    Args:
        path: the checkpoint (for the message).
        saved: the checkpoint's hyper-parameters.
        wanted: this model's hyper-parameters.
    """

    def same(a: Any, b: Any) -> bool:
        if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
            return list(a) == list(b)
        return a == b

    if "feature_resize" not in saved:  # written before the option: its features were point-sampled
        saved = {**saved, "feature_resize": LEGACY_FEATURE_RESIZE}
    diffs = [
        f"{key}: checkpoint {saved[key]!r}, this model {wanted[key]!r}"
        for key in ARCHITECTURE_KEYS
        if key in saved and key in wanted and not same(saved[key], wanted[key])
    ]
    if diffs:
        raise ConfigError(
            f"init_from checkpoint {path} was trained with another architecture ({'; '.join(diffs)}); "
            "set the same values in --model.init_args"
        )


def load_adtr_weights(model: nn.Module, path: str | Path, hparams: Mapping[str, Any]) -> dict[str, Any]:
    """Copies an ADTR checkpoint's ``model.*`` weights into ``model`` (an ``ADTRModel``), strictly.

    Args:
        model: the ``ADTRModel`` to fill.
        path: an ADTR (or ADTR+) Lightning checkpoint.
        hparams: this model's hyper-parameters (checked against the checkpoint's architecture).

    Returns:
        The checkpoint's hyper-parameters.
    """
    weights, saved = read_adtr_checkpoint(path)
    check_architecture(path, saved, hparams)
    try:
        model.load_state_dict(weights, strict=True)
    except RuntimeError as error:
        first = str(error).strip().splitlines()
        raise ConfigError(
            f"init_from checkpoint {path} does not fit this ADTR model ({' '.join(first[:2])[:300]}); "
            "set the backbone, layers and sizes it was trained with"
        ) from None
    return saved
