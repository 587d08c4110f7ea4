"""DSR's anomaly generation in the quantized feature space (stage 2).

Inside a Perlin mask, each code of a quantized feature map is replaced by a codebook vector that is *not*
among the nearest ones to the encoder feature at that position: the codes are ranked by their distance to
the feature, the nearest 5 % are excluded and a code is drawn uniformly from the ranks
``[floor(0.05 K), topk)`` with ``topk = clamp(int(s K) + 1, 1, K - 1)``, where ``s`` (the anomaly strength,
drawn per image uniformly in [0.2, 1)) sets how far from the feature the replacements may lie. Positions
outside the mask keep their code. Masks are drawn in image space and max-pooled to the feature resolution,
so a feature cell is anomalous when any of its pixels is (as in the official code).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from adbench.data.synthesis import perlin_mask

__all__ = ["downsample_mask", "image_space_masks", "replace_with_distant_codes"]


def image_space_masks(
    batch_size: int,
    size: tuple[int, int],
    generator: torch.Generator,
    probability: float = 0.5,
    min_scale_exp: int = 0,
    max_scale_exp: int = 6,
    threshold: float = 0.5,
) -> Tensor:
    """Perlin masks for a batch; each image gets one with chance ``probability``, else an empty mask.

    Args:
        batch_size: number of masks B.
        size: (H, W) image size.
        generator: CPU ``torch.Generator`` all randomness comes from.
        probability: chance that an image gets an anomaly (0.5 in DSR).
        min_scale_exp: smallest Perlin scale exponent.
        max_scale_exp: exclusive upper bound of the Perlin scale exponent (6 in DSR: scales 1..32).
        threshold: Perlin noise threshold (0.5 in DSR).

    Returns:
        (B, 1, H, W) float masks in {0, 1} on the CPU.
    """
    masks = torch.zeros(batch_size, 1, *size)
    for i in range(batch_size):
        if torch.rand(1, generator=generator).item() < probability:
            masks[i, 0] = perlin_mask(size, generator, min_scale_exp, max_scale_exp, threshold, device="cpu")
    return masks


def downsample_mask(mask: Tensor, size: tuple[int, int]) -> Tensor:
    """Max-pools an image-space mask (B, 1, H, W) to (B, 1, h, w); H, W must be multiples of h, w."""
    H, W = mask.shape[-2:]
    if H % size[0] or W % size[1]:
        raise ValueError(f"mask size {(H, W)} is not a multiple of the feature size {tuple(size)}")
    return F.max_pool2d(mask, kernel_size=(H // size[0], W // size[1]))


def replace_with_distant_codes(
    features: Tensor,
    quantized: Tensor,
    codebook: Tensor,
    mask: Tensor,
    strength: Tensor,
    generator: torch.Generator,
    exclude_nearest: float = 0.05,
) -> Tensor:
    """Replaces the codes inside ``mask`` by codebook vectors sampled away from the features.

    Args:
        features: (B, D, h, w) encoder features before quantization (distances are measured from these).
        quantized: (B, D, h, w) their quantized codes (kept outside the mask).
        codebook: (K, D) code vectors.
        mask: (B, 1, h, w) {0, 1} feature-resolution mask.
        strength: (B,) fraction of the codebook, nearest first, the replacements are drawn from.
        generator: CPU ``torch.Generator`` of the draws.
        exclude_nearest: fraction of nearest codes never drawn (0.05 in DSR).

    Returns:
        (B, D, h, w) codes: ``quantized`` outside the mask, distant codebook vectors inside.
    """
    K = codebook.shape[0]
    out = quantized.clone()
    codebook = codebook.float()
    code_norms = codebook.pow(2).sum(1)
    for b in range(features.shape[0]):
        inside = mask[b, 0] > 0
        n = int(inside.sum())
        if n == 0:
            continue
        flat = features[b].permute(1, 2, 0)[inside].float()  # (n, D)
        # squared distances up to the per-row constant ||f||^2, one matrix product
        scores = torch.addmm(code_norms.unsqueeze(0), flat, codebook.t(), alpha=-2.0)
        topk = max(1, min(int(float(strength[b]) * K) + 1, K - 1))
        lowest = min(int(K * exclude_nearest), topk - 1)
        ranked = torch.topk(scores, topk, dim=1, largest=False, sorted=True).indices  # (n, topk)
        draw = torch.rand(n, generator=generator).to(features.device)
        rank = lowest + (draw * (topk - lowest)).long().clamp_max(topk - lowest - 1)
        chosen = ranked[torch.arange(n, device=features.device), rank]
        replaced = out[b].permute(1, 2, 0)  # a view: writing into it writes into out
        replaced[inside] = codebook[chosen].to(out.dtype)
    return out
