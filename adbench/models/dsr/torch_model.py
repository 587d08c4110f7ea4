"""DSR (Zavrtanik et al., "DSR - A dual subspace re-projection network for surface anomaly detection",
ECCV 2022) as plain ``nn.Module``s.

* ``VQVAE`` (stage 1): the hi encoder maps an image to (h, H/4, W/4) features, the lo encoder those to
  (h, H/8, W/8); 1x1 convolutions project them to the code size D and two EMA codebooks quantize them
  (K_lo first; the hi features are computed from the hi encoder output concatenated with the upsampled lo
  codes). The general object appearance decoder reconstructs the image from both code maps.
* ``DSRModel`` (stages 2 and 3) adds two subspace restriction modules (codes -> normal-appearance codes,
  re-quantized with the frozen codebooks), the object-specific appearance decoder, the anomaly detection
  U-Net (both reconstructions -> 2-class map) and the upsampling U-Net (both reconstructions and the
  detection softmax -> refined 2-class map).

Paper sizes (official code): h = 128, residual blocks 2 x 64 channels, K = 4096 codes of D = 128 per
codebook (hi codes at 64x64, lo codes at 32x32 for a 256x256 image), U-Nets of base width 64, the object
decoder's bottleneck 64 channels, restriction networks of base width D. The object-specific decoder and
the detection U-Net start from N(0, 0.02) convolution weights, the other networks from PyTorch's defaults
(as in the official code). Image sides must be multiples of 16 and at least 64.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from adbench.errors import ConfigError
from adbench.models.components.vector_quantizer import EMAVectorQuantizer
from adbench.models.dsr.anomaly_generation import downsample_mask, replace_with_distant_codes
from adbench.models.dsr.anomaly_modules import (
    AnomalyDetectionModule,
    SubspaceRestrictionModule,
    UpsamplingModule,
)
from adbench.models.dsr.encoders_decoders import GeneralDecoder, HiEncoder, LoEncoder, ObjectDecoder

#: Image sides must be multiples of this (two 2x2 poolings in the object decoder at 1/4 resolution).
SIZE_MULTIPLE = 16
#: Smallest image side: the lo restriction network pools 1/8-resolution codes twice and instance norm needs
#: more than one pixel.
MIN_SIZE = 64


def check_image_size(image: Tensor) -> None:
    """Raises ConfigError unless the image sides are multiples of 16 and at least 64."""
    H, W = image.shape[-2:]
    if H % SIZE_MULTIPLE or W % SIZE_MULTIPLE or min(H, W) < MIN_SIZE:
        raise ConfigError(
            f"DSR needs image sides that are multiples of {SIZE_MULTIPLE} and at least {MIN_SIZE}, got {H}x{W}; "
            "set --data.init_args.image_size accordingly (e.g. 256)"
        )


def normal_conv_init(module: nn.Module, std: float = 0.02) -> None:
    """Draws the weights of (transposed) convolutions from N(0, std) (biases keep their default)."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.normal_(module.weight, 0.0, std)


@dataclass
class Codes:
    """Quantized encoding of an image batch.

    Attributes:
        hi_encoding: (B, h, H/4, W/4) hi encoder output (input of the hi projection).
        z_lo: (B, D, H/8, W/8) lo features before quantization.
        q_lo: (B, D, H/8, W/8) lo codes.
        z_hi: (B, D, H/4, W/4) hi features before quantization.
        q_hi: (B, D, H/4, W/4) hi codes.
        loss: sum of both commitment losses (scalar).
        perplexity_lo: code usage perplexity of the lo codebook in this batch.
        perplexity_hi: same for the hi codebook.
    """

    hi_encoding: Tensor
    z_lo: Tensor
    q_lo: Tensor
    z_hi: Tensor
    q_hi: Tensor
    loss: Tensor
    perplexity_lo: Tensor
    perplexity_hi: Tensor


class VQVAE(nn.Module):
    """DSR stage 1: dual-codebook VQ-VAE with the general object appearance decoder.

    Args:
        hidden_channels: encoder/decoder width h.
        residual_channels: channels inside the residual blocks.
        residual_layers: residual blocks per stack.
        num_embeddings: codes per codebook K.
        embedding_dim: code size D.
        commitment_cost: commitment loss weight beta.
        decay: EMA decay of the codebooks.
        init_from_data: initialize the codes from the first training batch (see ``EMAVectorQuantizer``).
        dead_code_threshold: running count below which a code is restarted (0: never).
    """

    def __init__(
        self,
        hidden_channels: int = 128,
        residual_channels: int = 64,
        residual_layers: int = 2,
        num_embeddings: int = 4096,
        embedding_dim: int = 128,
        commitment_cost: float = 0.25,
        decay: float = 0.99,
        init_from_data: bool = False,
        dead_code_threshold: float = 0.0,
    ) -> None:
        super().__init__()
        h, D = hidden_channels, embedding_dim
        self.hi_encoder = HiEncoder(h, residual_channels, residual_layers)
        self.lo_encoder = LoEncoder(h, residual_channels, residual_layers)
        self.project_lo = nn.Conv2d(h, D, 1)
        self.project_hi = nn.Conv2d(h + D, D, 1)
        codebook = dict(init_from_data=init_from_data, dead_code_threshold=dead_code_threshold)
        self.quantizer_lo = EMAVectorQuantizer(num_embeddings, D, commitment_cost, decay, **codebook)
        self.quantizer_hi = EMAVectorQuantizer(num_embeddings, D, commitment_cost, decay, **codebook)
        self.upsample_lo = nn.ConvTranspose2d(D, D, 4, stride=2, padding=1)
        self.general_decoder = GeneralDecoder(2 * D, h, residual_channels, residual_layers)

    def hi_features(self, hi_encoding: Tensor, q_lo: Tensor) -> Tensor:
        """Args: hi_encoding (B, h, H/4, W/4), q_lo (B, D, H/8, W/8). Returns: z_hi (B, D, H/4, W/4)."""
        return self.project_hi(torch.cat((hi_encoding, self.upsample_lo(q_lo)), dim=1))

    def join(self, q_hi: Tensor, q_lo: Tensor) -> Tensor:
        """Decoder input: upsampled lo codes and hi codes, (B, 2D, H/4, W/4)."""
        return torch.cat((self.upsample_lo(q_lo), q_hi), dim=1)

    def decode(self, q_hi: Tensor, q_lo: Tensor) -> Tensor:
        """General appearance reconstruction. Args: q_hi (B, D, H/4, W/4), q_lo (B, D, H/8, W/8)."""
        return self.general_decoder(self.join(q_hi, q_lo))

    def encode(self, image: Tensor) -> Codes:
        """Args: image (B, 3, H, W). Returns: the quantized encoding (codebooks EMA-updated in train mode)."""
        hi_encoding = self.hi_encoder(image)
        z_lo = self.project_lo(self.lo_encoder(hi_encoding))
        lo = self.quantizer_lo(z_lo)
        z_hi = self.hi_features(hi_encoding, lo.quantized)
        hi = self.quantizer_hi(z_hi)
        return Codes(
            hi_encoding,
            z_lo,
            lo.quantized,
            z_hi,
            hi.quantized,
            lo.loss + hi.loss,
            lo.perplexity,
            hi.perplexity,
        )

    def forward(self, image: Tensor) -> tuple[Tensor, Codes]:
        """Args: image (B, 3, H, W). Returns: reconstruction (B, 3, H, W) and the codes."""
        codes = self.encode(image)
        return self.decode(codes.q_hi, codes.q_lo), codes


@dataclass
class SyntheticCodes:
    """A stage-2 training batch in the quantized space.

    Attributes:
        q_hi: (B, D, H/4, W/4) hi codes with feature-space anomalies (the restriction modules' input).
        q_lo: (B, D, H/8, W/8) lo codes with feature-space anomalies.
        q_hi_normal: (B, D, H/4, W/4) hi codes of the unaltered image (feature loss target).
        q_lo_normal: (B, D, H/8, W/8) lo codes of the unaltered image (feature loss target).
        target: (B, 1, H, W) {0, 1} ground truth of the detection module: the mask of the altered codes,
            max-pooled to their resolution and expanded back to the image (blocky).
    """

    q_hi: Tensor
    q_lo: Tensor
    q_hi_normal: Tensor
    q_lo_normal: Tensor
    target: Tensor


@dataclass
class DSROutput:
    """DSR inference result.

    Attributes:
        object_image: (B, 3, H, W) object-specific reconstruction.
        general_image: (B, 3, H, W) general appearance reconstruction.
        detection_logits: (B, 2, H, W) anomaly detection module output.
        upsampled_logits: (B, 2, H, W) upsampling module output, or None when it was not run.
    """

    object_image: Tensor
    general_image: Tensor
    detection_logits: Tensor
    upsampled_logits: Tensor | None

    @property
    def detection_map(self) -> Tensor:
        """(B, 1, H, W) anomalous-class softmax of the detection module."""
        return torch.softmax(self.detection_logits, dim=1)[:, 1:]

    @property
    def anomaly_map(self) -> Tensor:
        """(B, 1, H, W) anomalous-class softmax of the upsampling module (detection module without it)."""
        if self.upsampled_logits is None:
            return self.detection_map
        return torch.softmax(self.upsampled_logits, dim=1)[:, 1:]


class DSRModel(nn.Module):
    """DSR: stage-1 VQ-VAE plus the stage-2 and stage-3 networks.

    Args:
        hidden_channels: encoder/decoder width h.
        residual_channels: channels inside the residual blocks.
        residual_layers: residual blocks per stack.
        num_embeddings: codes per codebook K.
        embedding_dim: code size D.
        commitment_cost: commitment loss weight beta (stage 1).
        decay: EMA decay of the codebooks (stage 1).
        unet_width: base width of the anomaly detection and upsampling U-Nets.
        restriction_width: base width of the subspace restriction networks (None: D, as in the official code).
        bottleneck_channels: bottleneck channels of the object-specific decoder.
    """

    def __init__(
        self,
        hidden_channels: int = 128,
        residual_channels: int = 64,
        residual_layers: int = 2,
        num_embeddings: int = 4096,
        embedding_dim: int = 128,
        commitment_cost: float = 0.25,
        decay: float = 0.99,
        unet_width: int = 64,
        restriction_width: int | None = None,
        bottleneck_channels: int = 64,
    ) -> None:
        super().__init__()
        D = embedding_dim
        self.vq = VQVAE(
            hidden_channels, residual_channels, residual_layers, num_embeddings, D, commitment_cost, decay
        )
        self.restrict_hi = SubspaceRestrictionModule(D, restriction_width or D)
        self.restrict_lo = SubspaceRestrictionModule(D, restriction_width or D)
        self.object_decoder = ObjectDecoder(
            2 * D, hidden_channels, residual_channels, residual_layers, bottleneck_channels
        )
        self.detector = AnomalyDetectionModule(unet_width)
        self.upsampler = UpsamplingModule(unet_width)
        for module in (self.object_decoder, self.detector):  # as the official code initializes these two
            module.apply(normal_conv_init)
        self.train()

    def train(self, mode: bool = True) -> DSRModel:
        """Sets the training mode; the stage-1 VQ-VAE always stays in eval mode (its codebooks are frozen)."""
        super().train(mode)
        self.vq.eval()
        return self

    # ------------------------------------------------------------------------------------------ stage 2 parts
    def restrict(self, q_hi: Tensor, q_lo: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Subspace restriction and the object-specific reconstruction.

        Args:
            q_hi: (B, D, H/4, W/4) hi codes.
            q_lo: (B, D, H/8, W/8) lo codes.

        Returns:
            Restricted hi features before re-quantization (B, D, H/4, W/4), the same for lo
            (B, D, H/8, W/8), and the object-specific reconstruction (B, 3, H, W).
        """
        features_hi, codes_hi = self.restrict_hi(q_hi, self.vq.quantizer_hi)
        features_lo, codes_lo = self.restrict_lo(q_lo, self.vq.quantizer_lo)
        object_image = self.object_decoder(self.vq.join(codes_hi, codes_lo))
        return features_hi, features_lo, object_image

    @torch.no_grad()
    def synthesize_codes(
        self,
        image: Tensor,
        mask: Tensor,
        generator: torch.Generator,
        strength_min: float = 0.2,
        exclude_nearest: float = 0.05,
    ) -> SyntheticCodes:
        """Encodes a normal batch and plants feature-space anomalies inside ``mask`` (official stage-2 recipe).

        Each image draws its mode with equal chances: anomalies in both codebooks (lo codes altered, hi codes
        recomputed from them and altered too), or in only one of them (each with chance 1/4). The ground
        truth is the mask at the resolution of the altered lo codes (both / lo only) or hi codes (hi only).

        Args:
            image: (B, 3, H, W) normal images.
            mask: (B, 1, H, W) {0, 1} image-space masks (all-zero: no anomaly).
            generator: CPU ``torch.Generator`` of all draws.
            strength_min: smallest anomaly strength (strengths are uniform in [strength_min, 1)).
            exclude_nearest: fraction of nearest codes never used as replacement.

        Returns:
            The altered and the normal codes and the detection target.
        """
        B, _, H, W = image.shape
        device = image.device
        codes = self.vq.encode(image)
        size_hi, size_lo = tuple(codes.q_hi.shape[-2:]), tuple(codes.q_lo.shape[-2:])
        mask = mask.to(device=device, dtype=image.dtype)
        mask_hi, mask_lo = downsample_mask(mask, size_hi), downsample_mask(mask, size_lo)

        draws = torch.rand(B, 4, generator=generator)
        strength_lo = strength_min + (1.0 - strength_min) * draws[:, 0]
        strength_hi = strength_min + (1.0 - strength_min) * draws[:, 1]
        both = draws[:, 2] < 0.5
        lo_only = ~both & (draws[:, 3] < 0.5)
        hi_only = ~both & ~lo_only
        alter_lo = (both | lo_only).to(device).view(B, 1, 1, 1).float()
        alter_hi = (both | hi_only).to(device).view(B, 1, 1, 1).float()

        q_lo = replace_with_distant_codes(
            codes.z_lo, codes.q_lo, self.vq.quantizer_lo.codebook, mask_lo * alter_lo, strength_lo, generator,
            exclude_nearest,
        )  # fmt: skip
        z_hi = self.vq.hi_features(codes.hi_encoding, q_lo)
        q_hi_from_lo = self.vq.quantizer_hi(z_hi).quantized
        keep_normal_hi = lo_only.to(device).view(B, 1, 1, 1)
        base_hi = torch.where(keep_normal_hi, codes.q_hi, q_hi_from_lo)
        q_hi = replace_with_distant_codes(
            z_hi, base_hi, self.vq.quantizer_hi.codebook, mask_hi * alter_hi, strength_hi, generator,
            exclude_nearest,
        )  # fmt: skip

        target_lo = F.interpolate(mask_lo, size=(H, W), mode="nearest")
        target_hi = F.interpolate(mask_hi, size=(H, W), mode="nearest")
        target = torch.where(hi_only.to(device).view(B, 1, 1, 1), target_hi, target_lo)
        return SyntheticCodes(q_hi, q_lo, codes.q_hi, codes.q_lo, target)

    # ------------------------------------------------------------------------------------------------ inference
    def reconstruct(self, image: Tensor) -> tuple[Tensor, Tensor]:
        """Args: image (B, 3, H, W). Returns: object-specific and general reconstructions (B, 3, H, W)."""
        codes = self.vq.encode(image)
        _, _, object_image = self.restrict(codes.q_hi, codes.q_lo)
        return object_image, self.vq.decode(codes.q_hi, codes.q_lo)

    def forward(self, image: Tensor, use_upsampler: bool = True) -> DSROutput:
        """Args: image (B, 3, H, W) with sides multiples of 16; use_upsampler: run the stage-3 module.

        Returns:
            Both reconstructions and the detection (and upsampling) logits at the image resolution.
        """
        check_image_size(image)
        object_image, general_image = self.reconstruct(image)
        detection_logits = self.detector(object_image, general_image)
        upsampled = None
        if use_upsampler:
            upsampled = self.upsampler(object_image, general_image, torch.softmax(detection_logits, dim=1))
        return DSROutput(object_image, general_image, detection_logits, upsampled)
