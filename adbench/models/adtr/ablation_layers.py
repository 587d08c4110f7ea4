"""Reconstruction layers of ADTR's Sec. 4.4 ablation: the transformer without attention, and a CNN.

Both keep the layout of ADTR's ``EncoderLayer`` (post-norm residual blocks over (B, N, D) tokens, an MLP of
``mlp_dim``, dropout) and change only how tokens are mixed:

* ``MLPLayer`` (``reconstruction: no_attention``): no mixing. The attention sub-block is removed, so each
  feature vector is reconstructed from itself alone by LayerNorms, residuals and the MLP; with no attention
  there is no place for a query embedding either.
* ``ConvLayer`` (``reconstruction: cnn``): the attention sub-block is replaced by a 3x3 convolution over the
  feature grid (zero padding), the convolutional reconstruction the paper compares with (Sec. 3.2: a 1x1 or
  n x n convolution can learn the identity shortcut). Per layer it has 9 D^2 + 2 D mlp_dim weights against
  the transformer's 4 D^2 + 2 D mlp_dim (encoder) and 8 D^2 + 2 D mlp_dim (decoder): 8.9M vs 7.4M weights in
  8 layers at the paper's size (D 256, MLP 1024); 8 layers see a 17x17 window, all of a 16x16 grid.
"""

from __future__ import annotations

from torch import Tensor, nn


def _mlp(dim: int, mlp_dim: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Linear(dim, mlp_dim), nn.ReLU(), nn.Dropout(dropout), nn.Linear(mlp_dim, dim))


class MLPLayer(nn.Module):
    """ADTR's encoder layer without its attention: post-norm residual MLP on each token.

    Args:
        dim: token size.
        mlp_dim: hidden size of the MLP.
        dropout: dropout rate.
    """

    def __init__(self, dim: int, mlp_dim: int, dropout: float) -> None:
        super().__init__()
        self.mlp = _mlp(dim, mlp_dim, dropout)
        self.norm = nn.LayerNorm(dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, height: int, width: int) -> Tensor:
        """Args: x (B, N, D) tokens of a height x width grid (unused: no mixing). Returns: (B, N, D)."""
        return self.norm(x + self.drop(self.mlp(x)))


class ConvLayer(nn.Module):
    """ADTR's encoder layer with a 3x3 convolution in place of self-attention.

    Args:
        dim: token size (convolution channels).
        mlp_dim: hidden size of the MLP.
        dropout: dropout rate.
    """

    def __init__(self, dim: int, mlp_dim: int, dropout: float) -> None:
        super().__init__()
        self.conv = nn.Conv2d(dim, dim, kernel_size=3, padding=1)
        self.mlp = _mlp(dim, mlp_dim, dropout)
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.drop1, self.drop2 = nn.Dropout(dropout), nn.Dropout(dropout)

    def forward(self, x: Tensor, height: int, width: int) -> Tensor:
        """Args: x (B, N, D) tokens of a height x width grid (N = height * width, row-major). Returns: (B, N, D)."""
        batch, tokens, dim = x.shape
        grid = x.transpose(1, 2).reshape(batch, dim, height, width)
        mixed = self.conv(grid).flatten(2).transpose(1, 2)  # (B, N, D)
        x = self.norm1(x + self.drop1(mixed))
        return self.norm2(x + self.drop2(self.mlp(x)))
