"""DSR's image encoders and decoders: residual stacks, the hi/lo encoders, the general object appearance
decoder (stage 1) and the object-specific appearance decoder (stage 2).

Shapes for an (B, 3, H, W) image, with ``h`` the hidden width and ``D`` the code size: the hi encoder gives
(B, h, H/4, W/4), the lo encoder (B, h, H/8, W/8); both decoders take the concatenated hi-resolution codes
and upsampled lo-resolution codes (B, 2D, H/4, W/4) and return an image (B, 3, H, W).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from adbench.models.components.fast_layers import InstanceNorm2d, MaxPool2x2


class ResidualBlock(nn.Module):
    """``relu(x) + conv1x1(relu(conv3x3(relu(x))))`` (convolutions without bias).

    The official code starts the block with an in-place ReLU, so its skip connection carries ``relu(x)``,
    not ``x``; this block does the same explicitly (needed for the published weights to work).

    Args:
        channels: input and output channels.
        hidden: channels of the 3x3 convolution.
    """

    def __init__(self, channels: int, hidden: int) -> None:
        super().__init__()
        self.conv3 = nn.Conv2d(channels, hidden, 3, padding=1, bias=False)
        self.conv1 = nn.Conv2d(hidden, channels, 1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        """Args: x (B, C, H, W). Returns: (B, C, H, W)."""
        x = F.relu(x)
        return x + self.conv1(F.relu(self.conv3(x)))


class ResidualStack(nn.Module):
    """``layers`` residual blocks followed by a ReLU.

    Args:
        channels: input and output channels.
        hidden: channels inside each block.
        layers: number of blocks.
    """

    def __init__(self, channels: int, hidden: int, layers: int) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(ResidualBlock(channels, hidden) for _ in range(layers))

    def forward(self, x: Tensor) -> Tensor:
        """Args: x (B, C, H, W). Returns: (B, C, H, W)."""
        for block in self.blocks:
            x = block(x)
        return F.relu(x)


class HiEncoder(nn.Module):
    """Image -> high-resolution features: two stride-2 4x4 convolutions, a 3x3 convolution, residual stack.

    Args:
        hidden: output channels h (the first convolution has h/2).
        residual_hidden: channels inside the residual blocks.
        residual_layers: residual blocks.
    """

    def __init__(self, hidden: int, residual_hidden: int, residual_layers: int) -> None:
        super().__init__()
        self.down1 = nn.Conv2d(3, hidden // 2, 4, stride=2, padding=1)
        self.down2 = nn.Conv2d(hidden // 2, hidden, 4, stride=2, padding=1)
        self.conv = nn.Conv2d(hidden, hidden, 3, padding=1)
        self.residual = ResidualStack(hidden, residual_hidden, residual_layers)

    def forward(self, image: Tensor) -> Tensor:
        """Args: image (B, 3, H, W). Returns: (B, h, H/4, W/4)."""
        x = F.relu(self.down1(image))
        x = F.relu(self.down2(x))
        return self.residual(self.conv(x))


class LoEncoder(nn.Module):
    """High-resolution features -> low-resolution features: a stride-2 4x4 convolution, a 3x3 convolution,
    residual stack.

    Args:
        hidden: input and output channels h.
        residual_hidden: channels inside the residual blocks.
        residual_layers: residual blocks.
    """

    def __init__(self, hidden: int, residual_hidden: int, residual_layers: int) -> None:
        super().__init__()
        self.down = nn.Conv2d(hidden, hidden, 4, stride=2, padding=1)
        self.conv = nn.Conv2d(hidden, hidden, 3, padding=1)
        self.residual = ResidualStack(hidden, residual_hidden, residual_layers)

    def forward(self, x: Tensor) -> Tensor:
        """Args: x (B, h, H/4, W/4). Returns: (B, h, H/8, W/8)."""
        x = F.relu(self.down(x))
        x = F.relu(self.conv(x))
        return self.residual(x)


class GeneralDecoder(nn.Module):
    """General object appearance decoder: codes -> image (3x3 convolution, residual stack, two stride-2
    transposed convolutions).

    Args:
        in_channels: code channels (2D: hi codes and upsampled lo codes).
        hidden: width h.
        residual_hidden: channels inside the residual blocks.
        residual_layers: residual blocks.
    """

    def __init__(self, in_channels: int, hidden: int, residual_hidden: int, residual_layers: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, hidden, 3, padding=1)
        self.residual = ResidualStack(hidden, residual_hidden, residual_layers)
        self.up1 = nn.ConvTranspose2d(hidden, hidden // 2, 4, stride=2, padding=1)
        self.up2 = nn.ConvTranspose2d(hidden // 2, 3, 4, stride=2, padding=1)

    def forward(self, codes: Tensor) -> Tensor:
        """Args: codes (B, 2D, H/4, W/4). Returns: image (B, 3, H, W)."""
        x = self.residual(self.conv(codes))
        return self.up2(F.relu(self.up1(x)))


def conv_norm_relu(in_channels: int, out_channels: int) -> list[nn.Module]:
    """3x3 convolution, instance norm (no affine parameters), ReLU."""
    return [
        nn.Conv2d(in_channels, out_channels, 3, padding=1),
        InstanceNorm2d(out_channels),
        nn.ReLU(True),
    ]


class ObjectDecoder(nn.Module):
    """Object-specific appearance decoder (stage 2): a small encoder (two conv blocks, each followed by 2x2
    max-pooling; widths C, 2C, 4C for C input channels) down to a ``bottleneck``-channel map at 1/4 of the
    code resolution, two stride-2 transposed convolutions back, then the general decoder's layout.

    The code resolution must be divisible by 4 (the image by 16).

    Args:
        in_channels: code channels C (2D).
        hidden: width h of the decoding part.
        residual_hidden: channels inside the residual blocks.
        residual_layers: residual blocks.
        bottleneck: channels of the 1x1 bottleneck (64 in the official code).
    """

    def __init__(
        self, in_channels: int, hidden: int, residual_hidden: int, residual_layers: int, bottleneck: int = 64
    ) -> None:
        super().__init__()
        c = in_channels
        self.encode = nn.Sequential(
            *conv_norm_relu(c, c),
            *conv_norm_relu(c, 2 * c),
            MaxPool2x2(),
            *conv_norm_relu(2 * c, 2 * c),
            *conv_norm_relu(2 * c, 4 * c),
            MaxPool2x2(),
            nn.Conv2d(4 * c, bottleneck, 1),
        )
        self.up_a = nn.ConvTranspose2d(bottleneck, bottleneck, 4, stride=2, padding=1)
        self.up_b = nn.ConvTranspose2d(bottleneck, bottleneck, 4, stride=2, padding=1)
        self.decode = GeneralDecoder(bottleneck, hidden, residual_hidden, residual_layers)

    def forward(self, codes: Tensor) -> Tensor:
        """Args: codes (B, 2D, H/4, W/4). Returns: image (B, 3, H, W)."""
        x = self.encode(codes)
        x = F.relu(self.up_a(x))
        x = F.relu(self.up_b(x))
        return self.decode(x)
