"""Pixel-wise segmentation losses shared by the detectors trained on synthetic anomaly masks.

All functions take raw logits (no sigmoid/softmax applied) and float masks in [0, 1] (binary case) or
integer class maps (multi-class focal loss), and return a scalar unless ``reduction="none"``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["binary_cross_entropy", "dice_loss", "focal_loss"]


def _reduce(loss: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    if reduction == "none":
        return loss
    raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


def binary_cross_entropy(logits: Tensor, target: Tensor, reduction: str = "mean") -> Tensor:
    """Binary cross-entropy on logits (numerically stable).

    Args:
        logits: (B, 1, H, W) raw scores.
        target: (B, 1, H, W) float mask in [0, 1].
        reduction: "mean", "sum" or "none".

    Returns:
        Scalar loss (or per-pixel losses for "none").
    """
    return F.binary_cross_entropy_with_logits(logits, target.to(logits.dtype), reduction=reduction)


def dice_loss(
    logits: Tensor, target: Tensor, smooth: float = 1.0, per_image: bool = False, from_logits: bool = True
) -> Tensor:
    """Soft Dice loss ``1 - (2 |P * T| + smooth) / (|P| + |T| + smooth)``.

    Args:
        logits: (B, 1, H, W) raw scores (or probabilities when ``from_logits`` is False).
        target: (B, 1, H, W) float mask in [0, 1].
        smooth: additive smoothing of numerator and denominator (keeps all-normal batches finite).
        per_image: compute the Dice of each image and average them; False pools all pixels of the batch
            into one overlap (the usual choice of segmentation codes, FractalAD's included).
        from_logits: apply a sigmoid to ``logits`` first.

    Returns:
        Scalar loss in [0, 1].
    """
    prob = torch.sigmoid(logits) if from_logits else logits
    target = target.to(prob.dtype)
    dims = tuple(range(1, prob.ndim)) if per_image else tuple(range(prob.ndim))
    intersection = (prob * target).sum(dim=dims)
    total = prob.sum(dim=dims) + target.sum(dim=dims)
    return (1.0 - (2.0 * intersection + smooth) / (total + smooth)).mean()


def focal_loss(
    logits: Tensor,
    target: Tensor,
    gamma: float = 2.0,
    alpha: float | None = None,
    reduction: str = "mean",
) -> Tensor:
    """Focal loss ``-alpha_t (1 - p_t)^gamma log(p_t)`` (Lin et al., 2017).

    Binary case: ``logits`` has one channel and ``target`` is a float mask of the same shape (sigmoid
    probabilities). Multi-class case: ``logits`` is (B, C, H, W) with C > 1 and ``target`` holds class
    indices, (B, H, W) or (B, 1, H, W) (softmax probabilities; a 2-class softmax is the DRAEM/DSR form).

    Args:
        logits: raw scores, (B, 1, H, W) or (B, C, H, W).
        target: float mask (binary) or integer class map (multi-class).
        gamma: focusing exponent (0 gives cross-entropy).
        alpha: weight of the positive class in the binary case (``1 - alpha`` for negatives), or of
            every non-background class in the multi-class case; None weights all classes equally.
        reduction: "mean", "sum" or "none".

    Returns:
        Scalar loss (or per-pixel losses for "none").
    """
    if logits.shape[1] == 1:
        target = target.to(logits.dtype)
        log_p = F.logsigmoid(logits)
        log_not_p = F.logsigmoid(-logits)
        log_pt = target * log_p + (1.0 - target) * log_not_p
        weight = None if alpha is None else target * alpha + (1.0 - target) * (1.0 - alpha)
    else:
        index = target.long()
        if index.ndim == logits.ndim:
            index = index.squeeze(1)
        log_pt = F.log_softmax(logits, dim=1).gather(1, index.unsqueeze(1)).squeeze(1)
        weight = None if alpha is None else torch.where(index > 0, alpha, 1.0 - alpha).to(logits.dtype)
    loss = -((1.0 - log_pt.exp()).clamp_min(0.0) ** gamma) * log_pt
    if weight is not None:
        loss = loss * weight
    return _reduce(loss, reduction)
