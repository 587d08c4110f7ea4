"""Loading DSR weights from earlier stages: adbench checkpoints and the published stage-1 file.

Stages chain through ``init_from``: a stage-1 source (a ``DSRStage1`` checkpoint, a ``DSR`` checkpoint's
stage-1 part, or the authors' published ``vq_model_pretrained_128_4096.pckl``) for stage 2, a stage-2 ``DSR``
checkpoint for stage 3. Every file is read with ``torch.load(weights_only=True)`` (no code execution).

The published file is a plain state dict of the official ``DiscreteLatentModel`` (128 hidden channels,
2 x 64-channel residual blocks, two 4096 x 128 codebooks). Its keys are renamed to this implementation's.
The official code feeds BGR images in [0, 1] (OpenCV), so the colour channels of the first encoder
convolution and of the last decoder layer are reversed on loading: the model then takes RGB in [0, 1]
(normalization mean 0, std 1).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from adbench.errors import WeightsError

__all__ = ["OFFICIAL_STAGE1_EXAMPLE_KEY", "load_file", "official_stage1_state", "stage1_state", "load_into"]

OFFICIAL_STAGE1_EXAMPLE_KEY = "_vq_vae_top._embedding.weight"

_OFFICIAL_RENAMES: tuple[tuple[str, str], ...] = (
    (r"^_encoder_b\._conv_1\.", "hi_encoder.down1."),
    (r"^_encoder_b\._conv_2\.", "hi_encoder.down2."),
    (r"^_encoder_b\._conv_3\.", "hi_encoder.conv."),
    (r"^_encoder_t\._conv_1\.", "lo_encoder.down."),
    (r"^_encoder_t\._conv_2\.", "lo_encoder.conv."),
    (r"^_decoder_b\._conv_1\.", "general_decoder.conv."),
    (r"^_decoder_b\._conv_trans_1\.", "general_decoder.up1."),
    (r"^_decoder_b\._conv_trans_2\.", "general_decoder.up2."),
    (r"^_encoder_b\._residual_stack\.", "hi_encoder.residual."),
    (r"^_encoder_t\._residual_stack\.", "lo_encoder.residual."),
    (r"^_decoder_b\._residual_stack\.", "general_decoder.residual."),
    (r"\._layers\.(\d+)\._block\.1\.", r".blocks.\1.conv3."),
    (r"\._layers\.(\d+)\._block\.3\.", r".blocks.\1.conv1."),
    (r"^_pre_vq_conv_top\.", "project_lo."),
    (r"^_pre_vq_conv_bot\.", "project_hi."),
    (r"^_vq_vae_top\.", "quantizer_lo."),
    (r"^_vq_vae_bot\.", "quantizer_hi."),
    (r"\._embedding\.weight$", ".codebook"),
    (r"\._ema_w$", ".ema_weight"),
    (r"\._ema_cluster_size$", ".cluster_size"),
    (r"^upsample_t\.", "upsample_lo."),
)


def load_file(path: str | Path, what: str) -> Any:
    """Reads a weights file safely (``weights_only=True``) onto the CPU.

    Args:
        path: the file.
        what: what the file should be, for error messages.

    Raises:
        WeightsError: missing file, or a file that is not a safely loadable PyTorch file.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise WeightsError(f"{what} not found: {path}; check the path (init_from)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - any unpickling problem means "not a weights file"
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise WeightsError(
            f"{path} cannot be read as {what} with torch.load(weights_only=True) ({first}); expected an adbench "
            "DSR checkpoint (.ckpt) or the published DSR stage-1 state dict (vq_model_pretrained_128_4096.pckl)"
        ) from None


def official_stage1_state(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Renames the official ``DiscreteLatentModel`` state dict to ``VQVAE`` keys (BGR -> RGB at both ends)."""
    out = {}
    for key, value in state.items():
        new = key
        for pattern, replacement in _OFFICIAL_RENAMES:
            new = re.sub(pattern, replacement, new)
        out[new] = value
    if "hi_encoder.down1.weight" in out:
        out["hi_encoder.down1.weight"] = out["hi_encoder.down1.weight"].flip(1)
    for key, dim in (("general_decoder.up2.weight", 1), ("general_decoder.up2.bias", 0)):
        if key in out:
            out[key] = out[key].flip(dim)
    return out


def _with_prefix(state: dict[str, Tensor], prefix: str) -> dict[str, Tensor]:
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


def stage1_state(loaded: Any, path: str | Path) -> dict[str, Tensor]:
    """The ``VQVAE`` state dict inside a loaded file: a DSRStage1 or DSR checkpoint, or the published file.

    Raises:
        WeightsError: the file holds no DSR stage-1 weights.
    """
    if isinstance(loaded, dict) and isinstance(loaded.get("state_dict"), dict):
        state = loaded["state_dict"]
        for prefix in ("model.vq.", "model."):
            part = _with_prefix(state, prefix)
            if "quantizer_lo.codebook" in part:
                return part
    elif isinstance(loaded, dict) and OFFICIAL_STAGE1_EXAMPLE_KEY in loaded:
        return official_stage1_state(loaded)
    raise WeightsError(
        f"{path} holds no DSR stage-1 weights: expected a DSRStage1 or DSR checkpoint, or the published "
        f"stage-1 state dict (with key {OFFICIAL_STAGE1_EXAMPLE_KEY!r})"
    )


def load_into(module: nn.Module, state: dict[str, Tensor], path: str | Path, sizes_hint: str) -> None:
    """Loads ``state`` into ``module`` strictly, with one clear error on missing keys or shape mismatches.

    Args:
        module: the target module.
        state: its complete state dict from a file.
        path: the file (for messages).
        sizes_hint: the options that set the shapes (for messages).

    Raises:
        WeightsError: missing or unexpected keys, or shapes that differ.
    """
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise WeightsError(
            f"{path} does not fit the {type(module).__name__}: {len(missing)} missing keys (e.g. "
            f"{missing[:2]}) and {len(unexpected)} unexpected keys (e.g. {unexpected[:2]})"
        )
    wrong = [(k, tuple(state[k].shape), tuple(v.shape)) for k, v in own.items() if state[k].shape != v.shape]
    if wrong:
        key, theirs, ours = wrong[0]
        raise WeightsError(
            f"{path} does not fit the model: {key} is {theirs} in the file but {ours} here ({len(wrong)} "
            f"tensors differ); set the same sizes as the file's run ({sizes_hint})"
        )
    module.load_state_dict(state)
