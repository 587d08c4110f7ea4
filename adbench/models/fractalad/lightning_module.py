"""FractalAD training and scoring: fractal anomalies synthesized on the fly, distillation + segmentation.

Every training image is paired with a copy carrying a fractal anomaly (``FractalAnomaly``: an IFS
attractor mask filled with a patch of the same image, or of another image of the batch). The student
distills the frozen teacher on the clean images; the segmentation head learns the anomaly mask of the
copies from the attended student features (or from the teacher's when distillation is off).

Facts from the public implementation (AIRS-CSR/FractalAD) this module follows: ResNet18 layer1..4,
student of the same architecture from random weights, 256x256 input, AdamW lr 1e-3 with weight decay
1e-3 over student and head (AdamW's default 1e-2 over the head alone when distillation is off), no
learning-rate schedule, batch 32, 100 epochs of 391 images (the category's images repeated, so 1200
steps for every category; the MVTec configs set ``max_steps: 1200``), loss ``L_kd + L_bce + L_dice``
(Dice pooled over the batch, smoothing 1), IFS of 2 maps, fill boxes of 0.1-0.5 of the image side,
opaque paste, ground-truth mask dilated by a 3x3 kernel three times (a 7x7 square), image score = mean of
the sigmoid map, distillation off for the MVTec AD textures (carpet, grid, leather, tile, wood).

Choices of this implementation:
- The anomaly generator is adbench's ``FractalAnomaly`` (IFS box sides drawn separately for height and
  width, attractor dilated 3x3 and closed 5x5, mask tightened to the pixels that changed, then dilated
  by ``mask_dilation``). As in the public generator the pasted patch is color-changed (one of three
  jitters, ``fractal_jitter``), flipped, rotated by 15-75 degrees (``fractal_rotation``) and gets
  Gaussian noise inside the mask half of the time (``fractal_noise``). Not reproduced: the public code's
  mild color jitter of both the clean and the augmented image, anomalies kept inside the central 80% of
  the image (on the object for capsule, pill, screw, toothbrush, zipper) and denser attractors (a
  singular-value constraint on the IFS).
- The validation loss uses its own generator stream, reseeded every validation epoch, so it is
  comparable across epochs and does not shift the training anomalies.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from adbench.data.batch import Batch
from adbench.data.synthesis import AnomalyGenerator, FractalAnomaly
from adbench.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from adbench.models.base import AnomalyModule
from adbench.models.components.synthetic_batch import BatchSynthesizer
from adbench.models.fractalad.loss import FractalADLoss
from adbench.models.fractalad.torch_model import FractalADModel


class _SameImage(AnomalyGenerator):
    """Wraps a generator so it always takes its fill content from the image itself (ignores ``source``)."""

    def __init__(self, inner: AnomalyGenerator) -> None:
        self.inner = inner

    def __call__(self, image: Tensor, generator: torch.Generator, source: Tensor | None = None):
        return self.inner(image, generator, None)

    def __repr__(self) -> str:
        return f"SameImage({self.inner!r})"


class FractalAD(AnomalyModule):
    """FractalAD: fractal anomaly generation + backbone knowledge distillation + segmentation head.

    Anomaly map: ``sigmoid`` of the head's logits at the input resolution. Image score: the map's mean
    (public implementation) or its max.

    Args:
        backbone: timm model name of teacher and student (``resnet18`` in the paper).
        layers: backbone stages fed to the segmentation head, finest first (timm out_indices; 1..4 are
            ResNet's layer1..layer4 at strides 4..32).
        pretrained: load ImageNet weights into the teacher.
        weights_path: local teacher weights file, for machines without hub access.
        student_pretrained: start the student from the teacher's weights (the public code: random).
        use_kd: backbone knowledge distillation; the paper turns it off for texture categories (then the
            head reads the teacher's features and only the head trains).
        head_width: channels inside the segmentation head (None: the finest stage's channels).
        lr: AdamW learning rate.
        weight_decay: AdamW weight decay; None: 1e-3 with distillation, 1e-2 without (the public code).
        kd_weight: weight of the cosine distillation loss.
        bce_weight: weight of the binary cross-entropy.
        dice_weight: weight of the Dice loss.
        dice_smooth: Dice smoothing constant.
        score: image score from the full-resolution map: "mean" (public code) or "max".
        mask_dilation: side (rounded up to odd) of the square the synthetic masks are dilated with before
            the loss (7: three 3x3 dilations as in the public code at 256x256; 1 disables).
        fill_from: fill the fractal with a patch of the "same" image (public code) or of the "other"
            (next) image of the batch.
        fractal_maps: (min, max) number of affine maps of the IFS.
        fractal_scale: (min, max) side of the fractal's box as a fraction of the image side.
        fractal_beta: (min, max) weight the original image keeps inside the mask (0: opaque paste).
        fractal_dilation: square dilation (pixels) of the rendered attractor points.
        fractal_closing: square closing (pixels) that merges the attractor's dust into blobs.
        fractal_flip: randomly flip the pasted patch.
        fractal_jitter: color change strength of the pasted patch (``FractalAnomaly.jitter``; 0 disables).
        fractal_rotation: (min, max) rotation of the pasted patch in degrees ((0, 0) disables).
        fractal_noise: std of the Gaussian noise added inside the mask half of the time ([0, 1] image
            units; 0 disables).
        anomaly_probability: chance that a training image gets an anomaly (1 in the public code).
        synthesis_seed: seed of the anomaly generator's random stream.
    """

    model_name = "fractalad"

    def __init__(
        self,
        backbone: str = "resnet18",
        layers: Sequence[int] = (1, 2, 3, 4),
        pretrained: bool = True,
        weights_path: str | None = None,
        student_pretrained: bool = False,
        use_kd: bool = True,
        head_width: int | None = None,
        lr: float = 1e-3,
        weight_decay: float | None = None,
        kd_weight: float = 1.0,
        bce_weight: float = 1.0,
        dice_weight: float = 1.0,
        dice_smooth: float = 1.0,
        score: Literal["mean", "max"] = "mean",
        mask_dilation: int = 7,
        fill_from: Literal["same", "other"] = "same",
        fractal_maps: tuple[int, int] = (2, 2),
        fractal_scale: tuple[float, float] = (0.1, 0.5),
        fractal_beta: tuple[float, float] = (0.0, 0.0),
        fractal_dilation: int = 3,
        fractal_closing: int = 5,
        fractal_flip: bool = True,
        fractal_jitter: float = 0.2,
        fractal_rotation: tuple[float, float] = (15.0, 75.0),
        fractal_noise: float = 10.0 / 255.0,
        anomaly_probability: float = 1.0,
        synthesis_seed: int = 0,
    ) -> None:
        super().__init__()
        if score not in ("mean", "max"):
            raise ValueError(f"score must be 'mean' or 'max', got {score!r}")
        if fill_from not in ("same", "other"):
            raise ValueError(f"fill_from must be 'same' or 'other', got {fill_from!r}")
        self.save_hyperparameters()
        self.model = FractalADModel(
            backbone=backbone,
            layers=layers,
            pretrained=pretrained,
            weights_path=weights_path,
            student_pretrained=student_pretrained,
            use_kd=use_kd,
            head_width=head_width,
        )
        self.loss = FractalADLoss(
            use_kd=use_kd,
            kd_weight=kd_weight,
            bce_weight=bce_weight,
            dice_weight=dice_weight,
            dice_smooth=dice_smooth,
        )
        fractal = FractalAnomaly(
            probability=anomaly_probability,
            num_maps=fractal_maps,
            scale=fractal_scale,
            beta=fractal_beta,
            dilation=fractal_dilation,
            closing=fractal_closing,
            flip=fractal_flip,
            jitter=fractal_jitter,
            rotation=fractal_rotation,
            noise=fractal_noise,
        )
        self.generator: AnomalyGenerator = _SameImage(fractal) if fill_from == "same" else fractal
        self._synthesizers: dict[str, BatchSynthesizer] = {}

    @property
    def expected_normalization(self) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
        return self.model.teacher.mean_std if self.hparams.pretrained else None

    # --------------------------------------------------------------------------------------- anomaly synthesis
    def _normalization(self) -> tuple[Sequence[float], Sequence[float]]:
        """The data's (mean, std): the attached datamodule's, else the teacher's, else ImageNet's."""
        datamodule = getattr(self._trainer, "datamodule", None) if self._trainer is not None else None
        if datamodule is not None and hasattr(datamodule, "mean"):
            return datamodule.mean, datamodule.std
        return self.expected_normalization or (IMAGENET_MEAN, IMAGENET_STD)

    def synthesizer(self, stage: str = "train") -> BatchSynthesizer:
        """The seeded batch synthesizer of ``stage`` ("train" or "val"), created on first use.

        Each process (DDP rank) and stage draws its own stream; a resumed fit restarts it from the seed.
        """
        if stage not in self._synthesizers:
            mean, std = self._normalization()
            seed = self.hparams.synthesis_seed + (0 if stage == "train" else 1) + 1000 * self.global_rank
            self._synthesizers[stage] = BatchSynthesizer(self.generator, mean, std, seed=seed)
        return self._synthesizers[stage]

    def synthesize(self, image: Tensor, stage: str = "train") -> tuple[Tensor, Tensor]:
        """Args: normalized images (B, 3, H, W). Returns: augmented images and loss targets (B, 1, H, W)."""
        augmented, mask = self.synthesizer(stage)(image)
        size = self.hparams.mask_dilation
        if size > 1:
            mask = F.max_pool2d(mask, kernel_size=size | 1, stride=1, padding=(size | 1) // 2)
        return augmented, mask

    # ------------------------------------------------------------------------------------------- loss and maps
    def compute_loss(self, batch: Batch, stage: str = "train") -> dict[str, Tensor]:
        augmented, mask = self.synthesize(batch.image, stage)
        out = self.model.training_forward(batch.image, augmented)
        return self.loss(out.logits, mask, out.teacher_clean, out.student_clean)

    def validation_step(self, batch: Batch, batch_idx: int) -> dict[str, Any]:
        with torch.no_grad():
            losses = self.compute_loss(batch, stage="val")
        self.log_dict({f"val/{k}": v for k, v in losses.items()}, sync_dist=True, batch_size=batch.batch_size)
        return self.predict_batch(batch)

    def on_validation_epoch_start(self) -> None:
        self._synthesizers.pop("val", None)  # same validation anomalies every epoch

    def anomaly_map(self, image: Tensor) -> Tensor:
        return self.model(image).anomaly_map

    def image_score(self, anomaly_map: Tensor) -> Tensor:
        flat = anomaly_map.flatten(1)
        return flat.mean(dim=1) if self.hparams.score == "mean" else flat.amax(dim=1)

    def configure_optimizers(self):
        weight_decay = self.hparams.weight_decay
        if weight_decay is None:
            weight_decay = 1e-3 if self.hparams.use_kd else 1e-2
        params = [p for p in self.model.parameters() if p.requires_grad]
        return torch.optim.AdamW(params, lr=self.hparams.lr, weight_decay=weight_decay)
