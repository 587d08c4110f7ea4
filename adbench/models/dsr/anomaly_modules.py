"""DSR's stage-2 and stage-3 networks: subspace restriction modules, the anomaly detection U-Net and the
upsampling U-Net.

All blocks are 3x3 convolutions with instance norm (no affine parameters) and ReLU; downsampling is 2x2
max-pooling, upsampling bilinear (``align_corners=True``) followed by a convolution, as in the official code.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from adbench.models.components.fast_layers import MaxPool2x2, max_pool_2x2
from adbench.models.components.vector_quantizer import EMAVectorQuantizer
from adbench.models.dsr.encoders_decoders import conv_norm_relu


def double_conv(in_channels: int, out_channels: int) -> nn.Sequential:
    """Two (3x3 convolution, instance norm, ReLU) layers: in -> out -> out."""
    return nn.Sequential(
        *conv_norm_relu(in_channels, out_channels), *conv_norm_relu(out_channels, out_channels)
    )


class UpConv(nn.Sequential):
    """2x bilinear upsampling (``align_corners=True``), then (3x3 convolution, instance norm, ReLU)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(
            nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True),
            *conv_norm_relu(in_channels, out_channels),
        )


class RestrictionNetwork(nn.Module):
    """Encoder-decoder without skip connections (widths w, 2w, 4w; two poolings), the subspace restriction
    network of DSR: it maps (possibly anomalous) codes to features of the normal appearance subspace.

    Args:
        channels: input and output channels (the code size D).
        width: base width w (D in the official code).
    """

    def __init__(self, channels: int, width: int) -> None:
        super().__init__()
        self.encode = nn.Sequential(
            double_conv(channels, width),
            MaxPool2x2(),
            double_conv(width, 2 * width),
            MaxPool2x2(),
            double_conv(2 * width, 4 * width),
        )
        self.decode = nn.Sequential(
            UpConv(4 * width, 2 * width),
            double_conv(2 * width, 2 * width),
            UpConv(2 * width, width),
            double_conv(width, width),
            nn.Conv2d(width, channels, 3, padding=1),
        )

    def forward(self, x: Tensor) -> Tensor:
        """Args: x (B, D, h, w) with h, w divisible by 4. Returns: (B, D, h, w)."""
        return self.decode(self.encode(x))


class SubspaceRestrictionModule(nn.Module):
    """Restriction network followed by re-quantization with the (frozen) stage-1 codebook.

    Args:
        channels: code size D.
        width: base width of the restriction network.
    """

    def __init__(self, channels: int, width: int) -> None:
        super().__init__()
        self.network = RestrictionNetwork(channels, width)

    def forward(self, codes: Tensor, quantizer: EMAVectorQuantizer) -> tuple[Tensor, Tensor]:
        """Args: codes (B, D, h, w); quantizer: the codebook of this resolution.

        Returns:
            The restricted features before quantization (B, D, h, w) and their quantized codes (B, D, h, w)
            (straight-through gradients).
        """
        features = self.network(codes)
        return features, quantizer(features).quantized


class UNet(nn.Module):
    """U-Net with four encoder levels (widths w, 2w, 4w, 4w; three poolings) and skip connections.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        width: base width w (64 in DSR).
    """

    def __init__(self, in_channels: int, out_channels: int, width: int) -> None:
        super().__init__()
        w = width
        self.enc1 = double_conv(in_channels, w)
        self.enc2 = double_conv(w, 2 * w)
        self.enc3 = double_conv(2 * w, 4 * w)
        self.enc4 = double_conv(4 * w, 4 * w)
        self.up3 = UpConv(4 * w, 4 * w)
        self.dec3 = double_conv(8 * w, 4 * w)
        self.up2 = UpConv(4 * w, 2 * w)
        self.dec2 = double_conv(4 * w, 2 * w)
        self.up1 = UpConv(2 * w, w)
        self.dec1 = double_conv(2 * w, w)
        self.head = nn.Conv2d(w, out_channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        """Args: x (B, in, H, W) with H, W divisible by 8. Returns: (B, out, H, W)."""
        e1 = self.enc1(x)
        e2 = self.enc2(max_pool_2x2(e1))
        e3 = self.enc3(max_pool_2x2(e2))
        e4 = self.enc4(max_pool_2x2(e3))
        d3 = self.dec3(torch.cat((self.up3(e4), e3), dim=1))
        d2 = self.dec2(torch.cat((self.up2(d3), e2), dim=1))
        d1 = self.dec1(torch.cat((self.up1(d2), e1), dim=1))
        return self.head(d1)


class AnomalyDetectionModule(nn.Module):
    """U-Net on the object-specific and general reconstructions -> 2-class logits (normal, anomalous).

    Args:
        width: U-Net base width.
    """

    def __init__(self, width: int = 64) -> None:
        super().__init__()
        self.unet = UNet(6, 2, width)

    def forward(self, object_image: Tensor, general_image: Tensor) -> Tensor:
        """Args: object_image, general_image (B, 3, H, W). Returns: logits (B, 2, H, W)."""
        return self.unet(torch.cat((object_image, general_image), dim=1))


class UpsamplingModule(nn.Module):
    """U-Net on both reconstructions and the detection module's softmax -> refined 2-class logits.

    Args:
        width: U-Net base width.
    """

    def __init__(self, width: int = 64) -> None:
        super().__init__()
        self.unet = UNet(8, 2, width)

    def forward(self, object_image: Tensor, general_image: Tensor, detection_probs: Tensor) -> Tensor:
        """Args: object_image, general_image (B, 3, H, W); detection_probs (B, 2, H, W) softmax.

        Returns:
            Logits (B, 2, H, W).
        """
        return self.unet(torch.cat((object_image, general_image, detection_probs), dim=1))
