"""Input validation shared by every metric: finite scores, binary labels, matching shapes."""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import Tensor


def as_scores(scores: Any, name: str, what: str = "scores") -> Tensor:
    """Converts scores to a floating tensor and rejects NaN / inf.

    Args:
        scores: tensor (or array-like) of raw scores, any shape, any range and sign.
        name: metric name used in error messages, e.g. ``"image_AUROC"``.
        what: what the tensor is called in error messages.

    Returns:
        The scores, same shape and device. float32 and float64 are kept; half precision becomes float32;
        integer and boolean scores become float64 (exact up to 2**53).

    Raises:
        ValueError: if any value is NaN or infinite.
    """
    t = torch.as_tensor(scores)
    if t.dtype in (torch.float16, torch.bfloat16):
        t = t.float()
    elif not t.is_floating_point():
        if t.is_complex():
            raise ValueError(f"{name}: {what} must be real-valued, got dtype {t.dtype}.")
        t = t.double()
    if t.numel() and not _all_finite(t):
        bad = int((~torch.isfinite(t)).sum())
        raise ValueError(
            f"{name}: {what} contain {bad} NaN/inf values; the anomaly scores must all be finite "
            "(check the model output, e.g. for a division by zero or an overflow)."
        )
    return t


def _all_finite(t: Tensor) -> bool:
    """True when no value is NaN or inf (min and max propagate NaN: one fast reduction)."""
    lo, hi = torch.aminmax(t.reshape(-1))
    return bool(torch.isfinite(lo) & torch.isfinite(hi))


def as_labels(labels: Any, name: str, what: str = "labels") -> Tensor:
    """Converts 0/1 labels (bool, integer or float) to a boolean tensor.

    Args:
        labels: tensor (or array-like) with values in {0, 1}; 1 is anomalous.
        name: metric name used in error messages.
        what: what the tensor is called in error messages.

    Returns:
        Boolean tensor of the same shape and device, True where anomalous.

    Raises:
        ValueError: if a value is neither 0 nor 1.
    """
    t = torch.as_tensor(labels)
    if t.dtype == torch.bool:
        return t
    nonzero = t != 0
    if not bool((t[nonzero] == 1).all()):
        bad = (t != 0) & (t != 1)
        examples = torch.unique(t[bad])[:5].tolist()
        raise ValueError(
            f"{name}: {what} must be binary (0 = normal, 1 = anomalous); "
            f"found {int(bad.sum())} other values, e.g. {examples}."
        )
    return nonzero


def check_same_shape(a: Tensor, b: Tensor, name: str, what_a: str, what_b: str) -> None:
    """Raises ValueError naming both shapes when ``a`` and ``b`` differ in shape."""
    if a.shape != b.shape:
        raise ValueError(
            f"{name}: {what_a} and {what_b} must have the same shape, got {tuple(a.shape)} and "
            f"{tuple(b.shape)}."
        )


def image_pair(scores: Any, labels: Any, name: str) -> tuple[Tensor, Tensor]:
    """Validates image-level inputs.

    Args:
        scores: (N,) raw scores (any shape is accepted and flattened, as long as labels match).
        labels: (N,) in {0, 1}.
        name: metric name for error messages.

    Returns:
        scores (N,) floating and labels (N,) bool, on the device of ``scores``.
    """
    s = as_scores(scores, name)
    y = torch.as_tensor(labels)
    check_same_shape(s, y, name, "scores", "labels")
    y = as_labels(y, name).to(s.device)
    return s.reshape(-1), y.reshape(-1)


def _squeeze_channel(t: Tensor, name: str, what: str) -> Tensor:
    if t.dim() == 4 and t.shape[1] == 1:
        return t[:, 0]
    if t.dim() == 3:
        return t
    raise ValueError(f"{name}: {what} must have shape (N, 1, H, W) or (N, H, W), got {tuple(t.shape)}.")


def pixel_pair(maps: Any, masks: Any, name: str) -> tuple[Tensor, Tensor]:
    """Validates pixel-level inputs.

    Args:
        maps: (N, 1, H, W) or (N, H, W) raw anomaly maps.
        masks: ground-truth masks in {0, 1}, (N, 1, H, W) or (N, H, W) with the same N, H, W.
        name: metric name for error messages.

    Returns:
        maps (N, H, W) floating and masks (N, H, W) bool, on the device of ``maps``.
    """
    m = torch.as_tensor(maps)
    g = torch.as_tensor(masks)
    shape_error = ValueError(
        f"{name}: maps and masks must have the same shape ((N, 1, H, W) or (N, H, W)), got "
        f"{tuple(m.shape)} and {tuple(g.shape)}."
    )
    if m.dim() not in (3, 4) or g.dim() not in (3, 4):
        raise shape_error
    try:
        m3 = _squeeze_channel(m, name, "maps")
        g3 = _squeeze_channel(g, name, "masks")
    except ValueError:
        raise shape_error from None
    if m3.shape != g3.shape:
        raise shape_error
    m3 = as_scores(m3, name, "anomaly maps")
    g3 = as_labels(g3, name, "masks").to(m3.device)
    return m3, g3


def has_both_classes(labels: Tensor, name: str, level: str, warn: bool = True) -> bool:
    """Checks that both classes are present; warns (and returns False) otherwise.

    Args:
        labels: bool tensor, True = anomalous.
        name: metric name for the warning.
        level: ``"image"`` or ``"pixel"``, selects the wording.
        warn: emit the warning (``compute_all`` warns once itself).
    """
    n_pos = int(torch.count_nonzero(labels))
    n_neg = labels.numel() - n_pos
    if n_pos > 0 and n_neg > 0:
        return True
    if warn:
        warnings.warn(one_class_message(name, level, n_pos, n_neg), UserWarning, stacklevel=3)
    return False


def one_class_message(name: str, level: str, n_pos: int, n_neg: int) -> str:
    """The warning text for a metric that is undefined because only one class is present."""
    unit = "images" if level == "image" else "pixels"
    if n_pos + n_neg == 0:
        what = f"no {unit} were given"
    elif n_pos == 0:
        what = f"all {n_neg} {unit} are normal (label 0)"
        if level == "pixel":
            what += "; the masks contain no anomalous pixel"
    else:
        what = f"all {n_pos} {unit} are anomalous (label 1)"
        if level == "pixel":
            what += "; the masks contain no normal pixel"
    return f"{name} is undefined because {what}; returning nan."
