"""ADTR+ objectives for the anomaly-available case (You et al., "ADTR", 2022, Sec. 3.3).

Both follow FCDD's semi-supervised form (Liznerski et al., ICLR 2021): a pseudo-Huber distance that is pulled
down on normal positions and a ``-log(1 - exp(-x))`` term that pushes it up on anomalous ones.

Equation numbers are those of the arXiv paper (2209.01816): Eq. 6 the pseudo-Huber map, Eq. 7 the
pixel-level loss, Eq. 8-9 the image-level variant. With ``d = f - f_hat`` (B, C, H, W) on the feature grid:

    phi(u)  = sqrt(((1/C) sum_i |d(i, u)|)^2 + 1) - 1                                     (Eq. 6)
    L_px    = (1/HW) sum_u (1 - y(u)) phi(u) - alpha log(1 - exp(-(1/HW) sum_u y(u) phi(u)))   (Eq. 7)
    q       = (1/k) sum top_k(phi)                                                         (Eq. 8)
    L_img   = (1 - y) q - alpha y log(1 - exp(-q))                                        (Eq. 9)

The paper writes both losses for one image; here they return one value per image and the caller averages
over the batch (as FCDD's implementation does). For an image without anomalous positions the push term of
Eq. 7 is -alpha log(1 - exp(0)) = +inf; such images contribute their pull term only (FCDD likewise excludes
completely normal samples from the push term). ``log(1 - exp(-x))`` is evaluated as ``log(-expm1(-x))``
with ``x`` clamped to at least ``EPS`` so it stays finite.
"""

from __future__ import annotations

import torch
from torch import Tensor

#: Smallest argument of ``log(1 - exp(-x))`` (keeps the push term finite when x underflows to 0).
EPS = 1e-8


def pseudo_huber_map(features: Tensor, reconstruction: Tensor) -> Tensor:
    """phi(u) = sqrt(((1/C) sum_i |d(i, u)|)^2 + 1) - 1 with d = features - reconstruction (Eq. 6).

    Args:
        features: (B, C, H, W) target features.
        reconstruction: (B, C, H, W).

    Returns:
        (B, H, W) non-negative map.
    """
    mean_abs = (features - reconstruction).abs().mean(dim=1)
    return (mean_abs.pow(2) + 1.0).sqrt() - 1.0


def _push(x: Tensor) -> Tensor:
    """-log(1 - exp(-x)), elementwise, for x >= 0 (clamped at EPS)."""
    return -torch.log(-torch.expm1(-x.clamp_min(EPS)))


def pixel_level_loss(phi: Tensor, labels: Tensor, alpha: float = 0.003) -> Tensor:
    """L_px of each image (Eq. 7).

    Args:
        phi: (B, H, W) pseudo-Huber map on the feature grid.
        labels: (B, H, W) y(u) in {0, 1} on the same grid (1 anomalous).
        alpha: weight of the push term (0.003 in the paper).

    Returns:
        (B,) per-image loss; images without anomalous positions get the pull term only.
    """
    y = labels.to(phi.dtype)
    pull = ((1.0 - y) * phi).flatten(1).mean(dim=1)
    anomalous = (y * phi).flatten(1).mean(dim=1)
    has_anomaly = y.flatten(1).amax(dim=1) > 0
    push = torch.where(has_anomaly, _push(anomalous), torch.zeros_like(anomalous))
    return pull + alpha * push


def image_score_top_k(phi: Tensor, k: int) -> Tensor:
    """q = mean of the k largest phi(u) of each image (Eq. 8); k is capped at H*W.

    Args:
        phi: (B, H, W).
        k: number of positions averaged.

    Returns:
        (B,).
    """
    flat = phi.flatten(1)
    return flat.topk(min(int(k), flat.shape[1]), dim=1).values.mean(dim=1)


def image_level_loss(phi: Tensor, labels: Tensor, alpha: float = 0.003, k: int = 20) -> Tensor:
    """L_img of each image (Eq. 9): (1 - y) q - alpha y log(1 - exp(-q)) with q from Eq. 8.

    Args:
        phi: (B, H, W) pseudo-Huber map on the feature grid.
        labels: (B,) image labels y in {0, 1}.
        alpha: weight of the push term (0.003 in the paper).
        k: top-k positions averaged into q (20 on CIFAR-10 in the paper).

    Returns:
        (B,) per-image loss.
    """
    q = image_score_top_k(phi, k)
    y = labels.to(q.dtype)
    push = torch.where(y > 0, _push(q), torch.zeros_like(q))
    return (1.0 - y) * q + alpha * y * push
