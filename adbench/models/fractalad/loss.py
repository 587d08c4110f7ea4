"""FractalAD's objective: cosine distillation on normal images + BCE + Dice on synthetic anomaly masks."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from adbench.models.components.segmentation_losses import binary_cross_entropy, dice_loss


def distillation_loss(teacher: Sequence[Tensor], student: Sequence[Tensor]) -> Tensor:
    """Sum over levels of the mean ``1 - cos(t, s)`` over channels (the public code's CosSimLoss).

    Args:
        teacher: per-level (B, C_i, h_i, w_i) teacher features.
        student: per-level student features of the same shapes.

    Returns:
        Scalar loss in [0, 2 * levels].
    """
    losses = [(1.0 - F.cosine_similarity(t, s, dim=1)).mean() for t, s in zip(teacher, student, strict=True)]
    return torch.stack(losses).sum()


class FractalADLoss:
    """``kd_weight * L_kd + bce_weight * L_bce + dice_weight * L_dice`` (all weights 1 in the public code).

    Args:
        use_kd: include the distillation term.
        kd_weight: weight of the distillation term.
        bce_weight: weight of the pixel-wise binary cross-entropy.
        dice_weight: weight of the Dice loss (pooled over the batch).
        dice_smooth: Dice smoothing constant.
    """

    def __init__(
        self,
        use_kd: bool = True,
        kd_weight: float = 1.0,
        bce_weight: float = 1.0,
        dice_weight: float = 1.0,
        dice_smooth: float = 1.0,
    ) -> None:
        self.use_kd = use_kd
        self.kd_weight = kd_weight
        self.bce_weight = bce_weight
        self.dice_weight = dice_weight
        self.dice_smooth = dice_smooth

    def __call__(
        self, logits: Tensor, mask: Tensor, teacher: Sequence[Tensor] = (), student: Sequence[Tensor] = ()
    ) -> dict[str, Tensor]:
        """Args: logits, mask (B, 1, H, W); clean-image teacher/student features. Returns: named terms."""
        bce = binary_cross_entropy(logits, mask)
        dice = dice_loss(logits, mask, smooth=self.dice_smooth)
        losses = {"bce": bce, "dice": dice}
        total = self.bce_weight * bce + self.dice_weight * dice
        if self.use_kd:
            kd = distillation_loss(teacher, student)
            losses["kd"] = kd
            total = total + self.kd_weight * kd
        return {"loss": total, **losses}
