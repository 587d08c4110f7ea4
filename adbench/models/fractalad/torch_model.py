"""FractalAD network (Xia et al., "FractalAD", 2023): backbone knowledge distillation + segmentation head.

A frozen pretrained teacher and a trainable student of the same timm architecture see the same image. The
cosine-similarity attention module (CSAM) turns their disagreement at every scale into
``A = (1 - cos(t, s)) / 2`` (B, 1, h, w) and passes ``A * s`` (detached: the segmentation loss never
reaches the student) to an FPN-style segmentation head; the student learns only from the distillation
loss on normal images. Neither backbone gets extra trainable parameters. With distillation off (the
paper's setting for texture categories) the head reads the teacher's features directly.

The head follows the public implementation (an SFNet-style FPN): 1x1 conv + BN + ReLU laterals to the
finest level's width, a top-down path whose coarser map is warped by a flow alignment module (a 3x3 conv
predicts a 2-D offset field from both maps) before being added, 3x3 conv + BN + ReLU smoothing, all
levels upsampled to the finest one, concatenated, fused by 3x3 conv + BN + ReLU and a 3x3 conv to one
logit channel, upsampled to the input size.

Choices where the public code is silent or tied to torchvision:
- Stages come from timm ``features_only`` (``layers`` 1..4 are ResNet's layer1..layer4, strides 4..32,
  the same tensors as the official stage split).
- The warp samples with ``align_corners=True``, matching the official normalization of the sampling
  grid ``2 x / (W - 1) - 1`` (zero flow is then exactly the identity).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from adbench.models.components.backbone import FeatureExtractor


def cosine_attention(teacher: Tensor, student: Tensor, eps: float = 1e-8) -> Tensor:
    """Anomaly attention ``A = (1 - cos(t, s)) / 2`` over channels.

    Args:
        teacher: (B, C, h, w) teacher features.
        student: (B, C, h, w) student features.
        eps: guard of the cosine's norms.

    Returns:
        (B, 1, h, w) in [0, 1]: 0 where the features point the same way, 1 where they are opposite.
    """
    return ((1.0 - F.cosine_similarity(teacher, student, dim=1, eps=eps)) / 2.0).unsqueeze(1)


def attend(teacher: Sequence[Tensor], student: Sequence[Tensor]) -> list[Tensor]:
    """CSAM: the student's features weighted by the attention, detached from the graph.

    Args:
        teacher: per-level (B, C_i, h_i, w_i) teacher features.
        student: per-level student features of the same shapes.

    Returns:
        Per-level ``A_i * s_i`` (B, C_i, h_i, w_i), without gradient.
    """
    return [(cosine_attention(t, s) * s).detach() for t, s in zip(teacher, student, strict=True)]


def _conv_bn_relu(in_channels: int, out_channels: int, kernel_size: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class FlowAlignment(nn.Module):
    """Warps a coarse map by an offset field predicted from it and a finer map (SFNet's flow alignment).

    As in the public FractalAD code, the flow is predicted at the fine resolution, resized to the coarse
    one, and the coarse map is resampled at its own resolution (offsets in coarse pixels).

    Args:
        channels: channels of both maps.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.flow = nn.Conv2d(2 * channels, 2, kernel_size=3, padding=1)

    def forward(self, fine: Tensor, coarse: Tensor) -> Tensor:
        """Args: fine (B, C, H, W), coarse (B, C, h, w). Returns: warped coarse map (B, C, h, w)."""
        h, w = coarse.shape[-2:]
        up = F.interpolate(coarse, size=fine.shape[-2:], mode="bilinear", align_corners=False)
        flow = F.interpolate(
            self.flow(torch.cat([fine, up], dim=1)), size=(h, w), mode="bilinear", align_corners=False
        )
        ys = torch.arange(h, device=coarse.device, dtype=coarse.dtype)
        xs = torch.arange(w, device=coarse.device, dtype=coarse.dtype)
        grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
        x = (grid_x + flow[:, 0]) * (2.0 / max(w - 1, 1)) - 1.0
        y = (grid_y + flow[:, 1]) * (2.0 / max(h - 1, 1)) - 1.0
        grid = torch.stack([x, y], dim=-1)  # (B, h, w, 2) as (x, y)
        return F.grid_sample(coarse, grid, mode="bilinear", padding_mode="zeros", align_corners=True)


class SegmentationHead(nn.Module):
    """FPN-style head with flow-aligned top-down fusion, over features ordered fine to coarse.

    Args:
        in_channels: channels of each level, finest first (e.g. ResNet18 layer1..4: 64, 128, 256, 512).
        width: channels inside the head (default: the finest level's, as in the public code).
        num_classes: output logit channels.
    """

    def __init__(self, in_channels: Sequence[int], width: int | None = None, num_classes: int = 1) -> None:
        super().__init__()
        if len(in_channels) < 1:
            raise ValueError("the segmentation head needs at least one feature level")
        width = int(width or in_channels[0])
        self.lateral = nn.ModuleList(_conv_bn_relu(c, width, 1) for c in in_channels)
        self.align = nn.ModuleList(FlowAlignment(width) for _ in in_channels[:-1])
        self.smooth = nn.ModuleList(_conv_bn_relu(width, width, 3) for _ in in_channels[:-1])
        self.fuse = _conv_bn_relu(len(in_channels) * width, width, 3)
        self.classifier = nn.Conv2d(width, num_classes, kernel_size=3, padding=1)

    def forward(self, features: Sequence[Tensor]) -> Tensor:
        """Args: per-level (B, C_i, h_i, w_i), finest first. Returns: logits (B, num_classes, h_0, w_0)."""
        if len(features) != len(self.lateral):
            raise ValueError(f"expected {len(self.lateral)} feature levels, got {len(features)}")
        pyramid = [self.lateral[-1](features[-1])]
        for i in range(len(features) - 2, -1, -1):
            lateral = self.lateral[i](features[i])
            warped = self.align[i](lateral, pyramid[0])
            merged = (
                F.interpolate(warped, size=lateral.shape[-2:], mode="bilinear", align_corners=False) + lateral
            )
            pyramid.insert(0, self.smooth[i](merged))
        size = pyramid[0].shape[-2:]
        stacked = [pyramid[0]] + [
            F.interpolate(p, size=size, mode="bilinear", align_corners=False) for p in pyramid[1:]
        ]
        return self.classifier(self.fuse(torch.cat(stacked, dim=1)))


@dataclass
class FractalADOutput:
    """What one forward pass produces.

    Attributes:
        logits: (B, 1, H, W) segmentation logits at the input resolution.
        teacher: per-level teacher features of the input.
        student: per-level student features of the input (empty without distillation).
    """

    logits: Tensor
    teacher: list[Tensor]
    student: list[Tensor]

    @property
    def anomaly_map(self) -> Tensor:
        """(B, 1, H, W) anomaly probability ``sigmoid(logits)``."""
        return torch.sigmoid(self.logits)


@dataclass
class FractalADTrainOutput:
    """What one training pass produces.

    Attributes:
        logits: (B, 1, H, W) segmentation logits of the augmented images.
        teacher_clean: per-level teacher features of the clean images (empty without distillation).
        student_clean: per-level student features of the clean images, with gradient (empty without).
    """

    logits: Tensor
    teacher_clean: list[Tensor]
    student_clean: list[Tensor]


class FractalADModel(nn.Module):
    """Teacher, student, cosine-similarity attention and segmentation head.

    Args:
        backbone: timm model name of teacher and student (ResNet18 in the paper).
        layers: backbone stages fed to the head (timm out_indices, finest first; 1..4 = ResNet layer1..4).
        pretrained: load ImageNet weights into the teacher.
        weights_path: local teacher weights file (offline use).
        student_pretrained: start the student from the teacher's weights (the public code starts it from
            random weights).
        use_kd: distillation on: the head reads attended student features; off: it reads the teacher's.
        head_width: channels inside the segmentation head (None: the finest level's channels).
    """

    def __init__(
        self,
        backbone: str = "resnet18",
        layers: Sequence[int] = (1, 2, 3, 4),
        pretrained: bool = True,
        weights_path: str | None = None,
        student_pretrained: bool = False,
        use_kd: bool = True,
        head_width: int | None = None,
    ) -> None:
        super().__init__()
        self.use_kd = use_kd
        self.teacher = FeatureExtractor(backbone, layers, pretrained=pretrained, weights_path=weights_path)
        self.student: FeatureExtractor | None = None
        if use_kd:
            self.student = FeatureExtractor(backbone, layers, pretrained=False, frozen=False)
            if student_pretrained:
                self.student.model.load_state_dict(self.teacher.model.state_dict())
        self.head = SegmentationHead(self.teacher.channels, width=head_width)

    def head_input(self, teacher: list[Tensor], student: list[Tensor]) -> list[Tensor]:
        """The head's input: attended student features with distillation, the teacher's without."""
        return attend(teacher, student) if self.use_kd else teacher

    def segment(self, features: list[Tensor], size: tuple[int, int]) -> Tensor:
        """Args: head input per level, output size (H, W). Returns: logits (B, 1, H, W)."""
        return F.interpolate(self.head(features), size=size, mode="bilinear", align_corners=False)

    def forward(self, image: Tensor) -> FractalADOutput:
        """Args: image (B, 3, H, W) normalized. Returns: logits at the input size and both feature lists."""
        teacher = self.teacher(image)
        student = self.student(image) if self.student is not None else []
        logits = self.segment(self.head_input(teacher, student), tuple(image.shape[-2:]))
        return FractalADOutput(logits, teacher, student)

    def training_forward(self, clean: Tensor, augmented: Tensor) -> FractalADTrainOutput:
        """One training pass: segmentation of the augmented images, distillation features of the clean ones.

        As in the public code, the student sees the clean and the augmented images in two passes (its
        BatchNorm statistics come from each batch alone); only the clean pass keeps a gradient.

        Args:
            clean: (B, 3, H, W) normal images (distillation inputs).
            augmented: (B, 3, H, W) the same images with synthetic anomalies.

        Returns:
            Logits of ``augmented`` and the teacher / student features of ``clean``.
        """
        size = tuple(augmented.shape[-2:])
        if self.student is None:
            return FractalADTrainOutput(self.segment(self.teacher(augmented), size), [], [])
        batch = clean.shape[0]
        both = self.teacher(torch.cat([clean, augmented]))  # eval-mode teacher: batch-independent
        teacher_clean, teacher_aug = [f[:batch] for f in both], [f[batch:] for f in both]
        student_clean = self.student(clean)
        with torch.no_grad():
            student_aug = self.student(augmented)
        logits = self.segment(attend(teacher_aug, student_aug), size)
        return FractalADTrainOutput(logits, teacher_clean, student_clean)
