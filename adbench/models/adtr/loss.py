"""ADTR's normal-only objective."""

from __future__ import annotations

from torch import Tensor


def feature_reconstruction_loss(features: Tensor, reconstruction: Tensor) -> Tensor:
    """L_norm = mean squared error between features and their reconstruction (paper Eq. 1).

    Args:
        features: (B, C, h, w) target features.
        reconstruction: (B, C, h, w).

    Returns:
        Scalar loss.
    """
    return (features - reconstruction).pow(2).mean()
