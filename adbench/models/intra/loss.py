"""InTra training loss: pixel L2 + weighted GMS and SSIM losses between inpainted and true patches."""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor

from adbench.models.components.gms import gms_distance
from adbench.models.components.ssim import ssim


def inpainting_loss(
    prediction: Tensor,
    target: Tensor,
    gms_weight: float = 0.01,
    ssim_weight: float = 0.01,
    gms_scales: Sequence[float] = (1.0, 0.5, 0.25),
) -> dict[str, Tensor]:
    """``L2 + gms_weight * L_GMS + ssim_weight * L_SSIM`` averaged over patches.

    ``L_GMS`` is the mean ``1 - GMS`` over pixels, averaged over ``gms_scales``; ``L_SSIM`` is ``1 - SSIM``
    (11x11 Gaussian window, sigma 1.5, data range 1).

    Args:
        prediction: (W, C, K, K) inpainted patches.
        target: (W, C, K, K) true patches.
        gms_weight: weight of the GMS loss (the paper's alpha).
        ssim_weight: weight of the SSIM loss (the paper's beta).
        gms_scales: scales of the multi-scale GMS loss.

    Returns:
        ``{"loss", "l2", "gms", "ssim"}`` scalars.
    """
    l2 = F.mse_loss(prediction, target)
    gms = gms_distance(prediction, target, gms_scales).mean()
    ssim_loss = 1 - ssim(prediction, target).mean()
    return {"loss": l2 + gms_weight * gms + ssim_weight * ssim_loss, "l2": l2, "gms": gms, "ssim": ssim_loss}
