"""DSR losses of the three training stages.

* Stage 1 (VQ-VAE): ``L2(I, I_gen) + beta (||z_hi - sg[q_hi]||^2 + ||z_lo - sg[q_lo]||^2)`` (mean squared
  errors); the codebooks themselves follow the EMA update.
* Stage 2: ``L_focal(M_gt, M) + lambda2 (L2(Q~_hi, Q_hi) + L2(Q~_lo, Q_lo)) + lambda3 L2(I, I_spc)`` with
  the restricted features Q~ (before re-quantization) regressed onto the codes of the unaltered image,
  lambda2 = 1 and lambda3 = 10 (paper Sec. 4.1, official code).
* Stage 3: focal loss of the upsampling module against the full-resolution smudge masks.

Focal loss: gamma 2 on the 2-class softmax, no class weighting, mean over pixels. The official code adds
1e-5 label smoothing inside the logarithm; here the log-softmax keeps it finite instead (a difference of
the order of 1e-5 in the loss).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from adbench.models.components.segmentation_losses import focal_loss


def segmentation_focal_loss(logits: Tensor, mask: Tensor, gamma: float = 2.0) -> Tensor:
    """Focal loss of 2-class logits against a binary mask.

    Args:
        logits: (B, 2, H, W) logits (normal, anomalous).
        mask: (B, 1, H, W) {0, 1} ground truth.
        gamma: focusing exponent.

    Returns:
        Scalar loss.
    """
    return focal_loss(logits, (mask > 0.5).long(), gamma=gamma)


def stage1_loss(image: Tensor, reconstruction: Tensor, commitment: Tensor) -> dict[str, Tensor]:
    """Args: image, reconstruction (B, 3, H, W); commitment: summed commitment losses. Returns: loss terms."""
    reconstruction_loss = F.mse_loss(reconstruction, image)
    return {
        "loss": reconstruction_loss + commitment,
        "reconstruction": reconstruction_loss,
        "commitment": commitment,
    }


def stage2_loss(
    logits: Tensor,
    target: Tensor,
    features_hi: Tensor,
    codes_hi: Tensor,
    features_lo: Tensor,
    codes_lo: Tensor,
    image: Tensor,
    object_image: Tensor,
    lambda_features: float = 1.0,
    lambda_image: float = 10.0,
    gamma: float = 2.0,
) -> dict[str, Tensor]:
    """Stage-2 loss.

    Args:
        logits: (B, 2, H, W) detection module output.
        target: (B, 1, H, W) feature-space anomaly mask at image resolution.
        features_hi: (B, D, H/4, W/4) restricted hi features; codes_hi: the unaltered image's hi codes.
        features_lo: (B, D, H/8, W/8) restricted lo features; codes_lo: the unaltered image's lo codes.
        image: (B, 3, H, W) input; object_image: its object-specific reconstruction.
        lambda_features: weight lambda2 of the two feature terms.
        lambda_image: weight lambda3 of the image term.
        gamma: focal exponent.

    Returns:
        ``loss`` and its terms.
    """
    focal = segmentation_focal_loss(logits, target, gamma)
    features = F.mse_loss(features_hi, codes_hi.detach()) + F.mse_loss(features_lo, codes_lo.detach())
    image_term = F.mse_loss(object_image, image)
    loss = focal + lambda_features * features + lambda_image * image_term
    return {"loss": loss, "focal": focal, "features": features, "image": image_term}


def stage3_loss(logits: Tensor, mask: Tensor, gamma: float = 2.0) -> dict[str, Tensor]:
    """Args: logits (B, 2, H, W) upsampling module output; mask (B, 1, H, W). Returns: loss terms."""
    focal = segmentation_focal_loss(logits, mask, gamma)
    return {"loss": focal, "focal": focal}
