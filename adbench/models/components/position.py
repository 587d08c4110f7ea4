"""Fixed 2D sine position embeddings (as in DETR-style transformers)."""

from __future__ import annotations

import math

import torch
from torch import Tensor


def sine_position_embedding(height: int, width: int, dim: int, temperature: float = 10000.0) -> Tensor:
    """Sine/cosine embedding of each (row, column), half the channels per axis.

    Args:
        height: grid rows.
        width: grid columns.
        dim: embedding size (divisible by 4).
        temperature: frequency base.

    Returns:
        (height * width, dim), row-major token order.
    """
    if dim % 4:
        raise ValueError(f"sine position embedding needs dim divisible by 4, got {dim}")
    quarter = dim // 4
    freqs = temperature ** (torch.arange(quarter, dtype=torch.float32) / quarter)
    rows = (torch.arange(height, dtype=torch.float32) + 1) / height * 2 * math.pi
    cols = (torch.arange(width, dtype=torch.float32) + 1) / width * 2 * math.pi
    row_angles = rows[:, None] / freqs  # (H, dim/4)
    col_angles = cols[:, None] / freqs  # (W, dim/4)
    row_emb = torch.cat([row_angles.sin(), row_angles.cos()], dim=1)  # (H, dim/2)
    col_emb = torch.cat([col_angles.sin(), col_angles.cos()], dim=1)  # (W, dim/2)
    grid = torch.cat(
        [row_emb[:, None, :].expand(height, width, -1), col_emb[None, :, :].expand(height, width, -1)], dim=-1
    )
    return grid.reshape(height * width, dim)
