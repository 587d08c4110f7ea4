"""DSR training and scoring: ``DSRStage1`` (VQ-VAE on any image folder) and ``DSR`` (stages 2 and 3).

Each stage is its own resumable ``fit`` and they chain through ``init_from``::

    adbench fit --config configs/dsr_stage1_imagenet.yaml                      # stage 1 (or the published file)
    adbench fit --config configs/dsr_mvtec.yaml --model.init_args.init_from <stage-1 last.ckpt>
    adbench fit --config configs/dsr_mvtec_stage3.yaml --model.init_args.init_from <stage-2 last.ckpt>
    adbench test --config configs/dsr_mvtec_stage3.yaml --ckpt_path <stage-3 last.ckpt>

Every stage has one optimizer (Adam), so Lightning's automatic optimization steps it and its learning-rate
schedule (a per-step ``MultiStepLR``); the codebooks follow their EMA update inside the stage-1 forward.

Choices where the paper and the official code are silent or differ (written down here):

* Stage 1 loss: image MSE plus both commitment losses (beta 0.25), the usual EMA VQ-VAE objective; no
  learning-rate schedule (the paper gives none). Images in [0, 1] RGB (mean 0, std 1).
* Stage 1 codebooks: the official stage-1 training code is not published. With the official quantizer's
  N(0, 1) initialization a codebook trained from scratch collapsed (perplexity 1.0 of the lo codebook after
  600 demo steps), so ``DSRStage1`` initializes the codes from the first batch's encoder vectors and restarts
  codes whose running count drops below 1 (both can be switched off). The EMA update itself is the official one.
* Stage 2 image augmentation: the official code rotates 40 % of the training images by up to 90 degrees;
  the configs express that with the datamodule's ``train_augmentations``.
* Stage 3 smudges: the paper pastes smudges from other images ("copy-pasted smudges"); the official code
  fills the Perlin region with a random solid colour. This follows the paper with ``PerlinSmudge`` (fill from
  the next image of the batch, half of the images left normal, original kept with weight beta in [0, 0.8)).
* Stage 3 schedule: constant learning rate (the official milestones lie beyond its loop and never fire).
* Evaluation: image score = max of the 21x21 mean-filtered (zero-padded) detection-module map at full
  resolution; pixel maps from the upsampling module, and at test time image, mask and map are cropped to
  the central ``eval_crop`` fraction (224 of 256 as in the official evaluation). Test outputs are then at
  the crop's size, not the input's.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from adbench.data.batch import Batch
from adbench.data.synthesis import PerlinSmudge
from adbench.errors import ConfigError
from adbench.models.base import AnomalyModule, NonFiniteError
from adbench.models.components.synthetic_batch import BatchSynthesizer
from adbench.models.dsr.anomaly_generation import image_space_masks
from adbench.models.dsr.loss import stage1_loss, stage2_loss, stage3_loss
from adbench.models.dsr.torch_model import VQVAE, DSRModel, check_image_size
from adbench.models.dsr.weights import load_file, load_into, stage1_state

UNIT_NORMALIZATION = ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
STAGE2_PARTS = ("restrict_hi", "restrict_lo", "object_decoder", "detector")


def _sizes_hint(hparams: Any) -> str:
    names = ("hidden_channels", "residual_channels", "residual_layers", "num_embeddings", "embedding_dim")
    return ", ".join(f"{n}={hparams[n]}" for n in names if n in hparams)


class DSRStage1(AnomalyModule):
    """DSR stage 1: the dual-codebook VQ-VAE and general appearance decoder, trained to reconstruct images.

    Paper setup: ImageNet, 200k iterations, batch 32, Adam lr 2e-4, two 4096 x 128 codebooks (EMA, decay
    0.99, commitment 0.25). Its checkpoint is the ``init_from`` of stage 2. As a detector on its own (for a
    sanity check), the anomaly map is the per-pixel squared reconstruction error.

    Args:
        hidden_channels: encoder/decoder width.
        residual_channels: channels inside the residual blocks.
        residual_layers: residual blocks per stack.
        num_embeddings: codes per codebook.
        embedding_dim: code size.
        commitment_cost: commitment loss weight.
        decay: EMA decay of the codebooks.
        codebook_init_from_data: set the codes to random encoder vectors of the first training batch instead of
            keeping their N(0, 1) initialization.
        dead_code_threshold: restart a code at a random encoder vector of the batch when its running count
            (EMA of assignments per batch) falls below this; 0 never restarts.
        lr: Adam learning rate.
        init_from: optional starting weights: a DSRStage1/DSR checkpoint or the published stage-1 file
            (``vq_model_pretrained_128_4096.pckl``), e.g. to fine-tune on another image folder.
    """

    model_name = "dsr_stage1"

    def __init__(
        self,
        hidden_channels: int = 128,
        residual_channels: int = 64,
        residual_layers: int = 2,
        num_embeddings: int = 4096,
        embedding_dim: int = 128,
        commitment_cost: float = 0.25,
        decay: float = 0.99,
        codebook_init_from_data: bool = True,
        dead_code_threshold: float = 1.0,
        lr: float = 2e-4,
        init_from: str | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.model = VQVAE(
            hidden_channels,
            residual_channels,
            residual_layers,
            num_embeddings,
            embedding_dim,
            commitment_cost,
            decay,
            codebook_init_from_data,
            dead_code_threshold,
        )

    @property
    def expected_normalization(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        return UNIT_NORMALIZATION

    def setup(self, stage: str) -> None:
        if stage == "fit" and self.hparams.init_from:
            path = self.hparams.init_from
            load_into(
                self.model,
                stage1_state(load_file(path, "DSR stage-1 weights"), path),
                path,
                _sizes_hint(self.hparams),
            )

    def compute_loss(self, batch: Batch) -> dict[str, Tensor]:
        check_image_size(batch.image)
        reconstruction, codes = self.model(batch.image)
        losses = stage1_loss(batch.image, reconstruction, codes.loss)
        return {**losses, "perplexity_hi": codes.perplexity_hi, "perplexity_lo": codes.perplexity_lo}

    def anomaly_map(self, image: Tensor) -> Tensor:
        check_image_size(image)
        reconstruction, _ = self.model(image)
        return (reconstruction - image).pow(2).mean(dim=1, keepdim=True)

    def configure_optimizers(self):
        return torch.optim.Adam(self.model.parameters(), lr=self.hparams.lr)


class DSR(AnomalyModule):
    """DSR stages 2 and 3 on a frozen stage-1 model; ``stage`` selects what one ``fit`` trains.

    * Stage 2 trains the subspace restriction modules, the object-specific decoder and the anomaly detection
      module on feature-space anomalies (paper: 100k iterations, batch 8, Adam lr 2e-4, x0.1 after 80k).
    * Stage 3 trains the upsampling module on image-space Perlin smudges (20k iterations, lr 2e-4).

    ``init_from`` chains the stages: stage 2 starts from a stage-1 source (a ``DSRStage1`` checkpoint, the
    published ``vq_model_pretrained_128_4096.pckl`` or a ``DSR`` checkpoint's stage-1 part), stage 3 from a
    stage-2 ``DSR`` checkpoint. It is applied when a fit starts (a resumed fit then restores its checkpoint on
    top); testing a checkpoint never reads it. Testing uses the upsampling module once stage 3 has trained,
    else the detection map (with a warning).

    Args:
        stage: 2 or 3.
        init_from: checkpoint of the previous stage (see above); None trains from random weights (warns).
        hidden_channels: stage-1 encoder/decoder width (must match the stage-1 weights).
        residual_channels: stage-1 residual block channels (must match).
        residual_layers: stage-1 residual blocks per stack (must match).
        num_embeddings: codes per codebook (must match).
        embedding_dim: code size (must match).
        commitment_cost: stage-1 commitment weight (kept for completeness; unused after stage 1).
        decay: stage-1 EMA decay (unused after stage 1: the codebooks are frozen).
        unet_width: base width of the anomaly detection and upsampling U-Nets.
        restriction_width: base width of the subspace restriction networks (None: embedding_dim).
        bottleneck_channels: bottleneck channels of the object-specific decoder.
        anomaly_probability: chance that a stage-2 training image gets feature-space anomalies.
        strength_min: smallest anomaly strength (fraction of the codebook, nearest first, replacements come
            from; uniform in [strength_min, 1)).
        exclude_nearest: fraction of nearest codes never used as replacements.
        perlin_min_scale_exp: smallest Perlin scale exponent of the masks (scales are 2**k).
        perlin_max_scale_exp: exclusive upper bound of the Perlin scale exponent.
        perlin_threshold: Perlin noise threshold of the masks.
        smudge_probability: chance that a stage-3 training image gets a smudge.
        smudge_beta: range of the weight the original image keeps inside a smudge.
        lambda_features: weight of the two feature regression terms (lambda2).
        lambda_image: weight of the object-specific image reconstruction term (lambda3).
        focal_gamma: focal loss exponent.
        lr: Adam learning rate.
        lr_milestones: optimizer steps after which the learning rate is multiplied by ``lr_gamma``; None:
            the paper's schedule of the stage ([80000] in stage 2, constant in stage 3).
        lr_gamma: learning-rate factor at each milestone.
        score_kernel: side of the mean filter applied to the detection map before its maximum (image score).
        eval_crop: fraction of the height and width kept (centred) for test outputs and pixel metrics;
            None keeps the whole image.
        seed: seed of the synthetic-anomaly random streams.
    """

    model_name = "dsr"

    def __init__(
        self,
        stage: int = 2,
        init_from: str | None = None,
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
        anomaly_probability: float = 0.5,
        strength_min: float = 0.2,
        exclude_nearest: float = 0.05,
        perlin_min_scale_exp: int = 0,
        perlin_max_scale_exp: int = 6,
        perlin_threshold: float = 0.5,
        smudge_probability: float = 0.5,
        smudge_beta: tuple[float, float] = (0.0, 0.8),
        lambda_features: float = 1.0,
        lambda_image: float = 10.0,
        focal_gamma: float = 2.0,
        lr: float = 2e-4,
        lr_milestones: Sequence[int] | None = None,
        lr_gamma: float = 0.1,
        score_kernel: int = 21,
        eval_crop: float | None = 0.875,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if stage not in (2, 3):
            raise ConfigError(f"DSR stage must be 2 or 3 (stage 1 is DSRStage1), got {stage}")
        if eval_crop is not None and not 0.0 < eval_crop <= 1.0:
            raise ConfigError(f"eval_crop must be in (0, 1] or null, got {eval_crop}")
        self.save_hyperparameters()
        self.model = DSRModel(
            hidden_channels=hidden_channels,
            residual_channels=residual_channels,
            residual_layers=residual_layers,
            num_embeddings=num_embeddings,
            embedding_dim=embedding_dim,
            commitment_cost=commitment_cost,
            decay=decay,
            unet_width=unet_width,
            restriction_width=restriction_width,
            bottleneck_channels=bottleneck_channels,
        )
        #: training batches seen in stage 2 and in stage 3 (kept in checkpoints)
        self.register_buffer("stage_steps", torch.zeros(2, dtype=torch.long))
        self.trainable_parts = STAGE2_PARTS if stage == 2 else ("upsampler",)
        for name, child in self.model.named_children():
            child.requires_grad_(name in self.trainable_parts)
        self.anomaly_generator = torch.Generator().manual_seed(seed)
        self.synthesizer: BatchSynthesizer | None = None
        self._warned_stage3 = False
        self.train()  # frozen parts to eval mode now: Lightning keeps the modes it finds at fit start

    # ------------------------------------------------------------------------------------------------ set-up
    @property
    def expected_normalization(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        return UNIT_NORMALIZATION

    @property
    def stage(self) -> int:
        return int(self.hparams.stage)

    @property
    def upsampler_trained(self) -> bool:
        return bool(self.stage_steps[1] > 0)

    def train(self, mode: bool = True) -> DSR:
        """Train mode for the parts this stage trains only; frozen parts (codebooks included) stay in eval.

        Lightning does not call ``train()`` when a fit starts; it keeps (and after validation restores) each
        module's mode, so ``__init__`` sets the modes once."""
        super().train(mode)
        for name, child in self.model.named_children():
            if name not in self.trainable_parts:
                child.eval()
        return self

    def _smudger(self, seed: int | None = None) -> BatchSynthesizer:
        datamodule = getattr(self._trainer, "datamodule", None) if self._trainer is not None else None
        mean, std = (datamodule.mean, datamodule.std) if hasattr(datamodule, "mean") else UNIT_NORMALIZATION
        smudge = PerlinSmudge(
            probability=self.hparams.smudge_probability,
            min_scale_exp=self.hparams.perlin_min_scale_exp,
            max_scale_exp=self.hparams.perlin_max_scale_exp,
            threshold=self.hparams.perlin_threshold,
            beta=tuple(self.hparams.smudge_beta),
        )
        return BatchSynthesizer(smudge, mean, std, seed=self.hparams.seed if seed is None else seed)

    def setup(self, stage: str) -> None:
        if stage != "fit":
            return
        self.synthesizer = self._smudger()
        path = self.hparams.init_from
        if not path:
            previous = "stage-1" if self.stage == 2 else "stage-2"
            warnings.warn(
                f"DSR stage {self.stage} without init_from trains on a randomly initialized {previous} model "
                f"(only useful for tests); chain with --model.init_args.init_from <{previous} checkpoint>",
                stacklevel=2,
            )
            return
        loaded = load_file(path, f"the DSR stage-{self.stage - 1} checkpoint")
        load_into(self.model.vq, stage1_state(loaded, path), path, _sizes_hint(self.hparams))
        if self.stage == 3:
            self._load_stage2_parts(loaded, path)

    def _load_stage2_parts(self, loaded: Any, path: str) -> None:
        state = loaded.get("state_dict") if isinstance(loaded, dict) else None
        if not isinstance(state, dict) or not any(k.startswith("model.detector.") for k in state):
            raise ConfigError(
                f"DSR stage 3 starts from a stage-2 DSR checkpoint, but {path} has no stage-2 weights "
                "(train stage 2 with configs/dsr_*.yaml first)"
            )
        for name in STAGE2_PARTS:
            part = {k[len(f"model.{name}.") :]: v for k, v in state.items() if k.startswith(f"model.{name}.")}
            load_into(getattr(self.model, name), part, path, _sizes_hint(self.hparams))
        steps = state.get("stage_steps")
        if steps is not None:
            self.stage_steps[0] = int(steps[0])
        if int(self.stage_steps[0]) == 0:
            warnings.warn(f"{path} is a DSR checkpoint whose stage 2 was never trained", stacklevel=2)

    # -------------------------------------------------------------------------------------------------- losses
    def compute_loss(self, batch: Batch, generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """Loss of the current stage; ``generator`` replaces the training random stream (validation)."""
        image = batch.image
        check_image_size(image)
        if self.stage == 2:
            return self._stage2_loss(image, generator or self.anomaly_generator)
        synthesizer = self.synthesizer or self._smudger()
        if generator is not None:
            synthesizer = self._smudger(seed=int(torch.randint(2**31, (1,), generator=generator)))
        smudged, masks = synthesizer(image)
        with torch.no_grad():
            object_image, general_image = self.model.reconstruct(smudged)
            detection = torch.softmax(self.model.detector(object_image, general_image), dim=1)
        logits = self.model.upsampler(object_image, general_image, detection)
        return stage3_loss(logits, masks, self.hparams.focal_gamma)

    def _stage2_loss(self, image: Tensor, generator: torch.Generator) -> dict[str, Tensor]:
        hp = self.hparams
        masks = image_space_masks(
            image.shape[0], tuple(image.shape[-2:]), generator, hp.anomaly_probability,
            hp.perlin_min_scale_exp, hp.perlin_max_scale_exp, hp.perlin_threshold,
        )  # fmt: skip
        synthetic = self.model.synthesize_codes(image, masks, generator, hp.strength_min, hp.exclude_nearest)
        features_hi, features_lo, object_image = self.model.restrict(synthetic.q_hi, synthetic.q_lo)
        with torch.no_grad():
            general_image = self.model.vq.decode(synthetic.q_hi, synthetic.q_lo)
        logits = self.model.detector(object_image.detach(), general_image)
        return stage2_loss(
            logits, synthetic.target, features_hi, synthetic.q_hi_normal, features_lo, synthetic.q_lo_normal,
            image, object_image, hp.lambda_features, hp.lambda_image, hp.focal_gamma,
        )  # fmt: skip

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        self.stage_steps[self.stage - 2] += 1

    def validation_step(self, batch: Batch, batch_idx: int) -> dict[str, Any]:
        """Validation loss on synthetic anomalies drawn from a fixed per-batch seed (comparable across epochs,
        and the training random stream is left alone)."""
        generator = torch.Generator().manual_seed(self.hparams.seed + 1_000_003 * (batch_idx + 1))
        with torch.no_grad():
            losses = self.compute_loss(batch, generator)
        self.log_dict({f"val/{k}": v for k, v in losses.items()}, sync_dist=True, batch_size=batch.batch_size)
        return self.predict_batch(batch)

    def configure_optimizers(self):
        params = [p for p in self.model.parameters() if p.requires_grad]
        optimizer = torch.optim.Adam(params, lr=self.hparams.lr)
        milestones = self.hparams.lr_milestones
        if milestones is None:
            milestones = (80_000,) if self.stage == 2 else ()
        scheduler = torch.optim.lr_scheduler.MultiStepLR(
            optimizer, milestones=sorted(int(m) for m in milestones), gamma=self.hparams.lr_gamma
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # ------------------------------------------------------------------------------------------------ scoring
    def anomaly_map(self, image: Tensor) -> Tensor:
        return self.model(image, use_upsampler=self.upsampler_trained).anomaly_map

    def detection_score(self, detection_map: Tensor) -> Tensor:
        """Image scores: max of the zero-padded mean-filtered detection map. Args: (B, 1, H, W). Returns: (B,)."""
        k = self.hparams.score_kernel
        pooled = F.avg_pool2d(detection_map, kernel_size=k, stride=1, padding=k // 2, count_include_pad=True)
        return pooled.flatten(1).amax(dim=1)

    def predict_batch(self, batch: Batch, crop: bool = False) -> dict[str, Any]:
        """Maps from the upsampling module (detection module before stage 3), scores from the detection map.

        Args:
            batch: the batch.
            crop: crop image, mask and map to the central ``eval_crop`` fraction (test protocol).
        """
        out = self.model(batch.image, use_upsampler=self.upsampler_trained)
        anomaly_map = out.anomaly_map
        if not torch.isfinite(anomaly_map).all():
            raise NonFiniteError(
                f"{self.model_name}: the anomaly map of a batch starting with {batch.path[0]} contains NaN/inf; "
                "the model diverged or its checkpoint is broken: retrain or check the checkpoint"
            )
        result = {
            "anomaly_map": anomaly_map,
            "pred_score": self.detection_score(out.detection_map),
            "image": batch.image,
            "label": batch.label,
            "mask": batch.mask,
            "path": batch.path,
            "index": batch.index,
        }
        fraction = self.hparams.eval_crop
        if crop and fraction is not None and fraction < 1.0:
            H, W = batch.image.shape[-2:]
            h, w = max(1, round(H * fraction)), max(1, round(W * fraction))
            top, left = (H - h) // 2, (W - w) // 2
            for key in ("anomaly_map", "image", "mask"):
                result[key] = result[key][..., top : top + h, left : left + w]
        return result

    def on_test_start(self) -> None:
        super().on_test_start()
        if int(self.stage_steps[0]) == 0:
            warnings.warn("DSR: testing a model whose stage 2 was never trained", stacklevel=2)
        if not self.upsampler_trained and not self._warned_stage3:
            self._warned_stage3 = True
            warnings.warn(
                "DSR: stage 3 (upsampling module) was not trained; testing with the stage-2 detection map",
                stacklevel=2,
            )

    def test_step(self, batch: Batch, batch_idx: int) -> dict[str, Any]:
        return self.predict_batch(batch, crop=True)

    # ---------------------------------------------------------------------------------------------- checkpoint
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["dsr_random"] = {
            "anomaly_generator": self.anomaly_generator.get_state(),
            "smudge_generator": self.synthesizer.random.get_state() if self.synthesizer is not None else None,
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        states = checkpoint.get("dsr_random", {})
        if states.get("anomaly_generator") is not None:
            self.anomaly_generator.set_state(states["anomaly_generator"])
        self._smudge_state = states.get("smudge_generator")

    def on_fit_start(self) -> None:
        super().on_fit_start()
        state = getattr(self, "_smudge_state", None)
        if state is not None and self.synthesizer is not None:
            self.synthesizer.random.set_state(state)
