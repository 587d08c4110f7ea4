"""PatchCore fitting: one pass over the normal training images, a greedy coreset, no optimizer."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from adbench.data.batch import Batch
from adbench.errors import ConfigError
from adbench.models.base import AnomalyModule
from adbench.models.patchcore.torch_model import PatchCoreModel


class PatchCore(AnomalyModule):
    """PatchCore (Roth et al., 2022): nearest-neighbour distances to a coreset of normal patch features.

    ``fit`` is one epoch without an optimizer (set ``trainer.max_epochs: 1``): every training image's patch
    features are collected, then the memory bank is a greedy k-center coreset of them
    (``coreset_ratio`` of all patches; the paper reports 25%, 10% and 1%). Under DDP every rank's patches are
    gathered, padding duplicates of the distributed sampler dropped by sample index and the patches ordered
    by index before the coreset, so any number of processes builds the same bank as one. The bank is a
    buffer of the model: checkpoints carry it (loadable with ``weights_only=True``).

    Paper setup: WideResNet-50 layers 2 and 3, 3x3 neighbourhood averaging, 256 px resized and 224 px
    center-cropped images, coreset 10% (1% for the fastest row), random projection to 128 dimensions for the
    coreset distances, image score reweighted over 9 neighbours (Eq. 7), Gaussian sigma 4 on the map.

    Args:
        backbone: timm model name of the frozen feature extractor.
        layers: backbone stages whose features are combined (timm out_indices; 2 and 3 are a ResNet's
            layer2 and layer3).
        pretrained: load ImageNet weights for the backbone (needed for meaningful features).
        weights_path: local backbone weights file, for machines without hub access.
        embedding_dim: fixed patch-feature dimension (each stage averaged to an equal share, as the official
            code); null concatenates all channels (anomalib).
        coreset_ratio: fraction of the training patches kept in the memory bank (1.0 keeps all of them).
        projection_dim: dimension of the random projection used for coreset distances (null: full space).
        num_neighbors: neighbourhood of the image-score reweighting (1: the plain maximum patch score).
        sigma: Gaussian smoothing of the anomaly map in pixels (0: none).
        coreset_seed: seed of the coreset's random projection and first point (the bank is reproducible).
    """

    model_name = "patchcore"

    def __init__(
        self,
        backbone: str = "wide_resnet50_2",
        layers: Sequence[int] = (2, 3),
        pretrained: bool = True,
        weights_path: str | None = None,
        embedding_dim: int | None = None,
        coreset_ratio: float = 0.1,
        projection_dim: int | None = 128,
        num_neighbors: int = 9,
        sigma: float = 4.0,
        coreset_seed: int = 0,
    ) -> None:
        super().__init__()
        if not 0.0 < coreset_ratio <= 1.0:
            raise ConfigError(f"PatchCore: coreset_ratio must be in (0, 1], got {coreset_ratio}")
        if projection_dim is not None and projection_dim < 1:
            raise ConfigError(
                f"PatchCore: projection_dim must be a positive integer or null, got {projection_dim}"
            )
        self.save_hyperparameters()
        self.automatic_optimization = False
        self.model = PatchCoreModel(
            backbone=backbone,
            layers=layers,
            pretrained=pretrained,
            weights_path=weights_path,
            embedding_dim=embedding_dim,
            num_neighbors=num_neighbors,
            sigma=sigma,
        )
        # torch's DistributedDataParallel refuses a module with no trainable parameter; this one is never used
        # (no optimizer, no backward), it only lets `strategy: ddp` wrap PatchCore like every other model.
        self.ddp_placeholder = torch.nn.Parameter(torch.zeros(1))
        self._pretrained_features = pretrained
        self._embeddings: list[Tensor] = []
        self._indices: list[Tensor] = []

    @property
    def expected_normalization(self) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
        return self.model.backbone.mean_std if self._pretrained_features else None

    def configure_optimizers(self) -> None:
        """No optimizer: the memory bank is built, not trained."""
        return None

    # ----------------------------------------------------------------------------------------------- fitting
    def on_train_epoch_start(self) -> None:
        self._embeddings, self._indices = [], []

    def training_step(self, batch: Batch, batch_idx: int) -> None:
        """Collects the batch's patch features (on the CPU, to keep accelerator memory flat)."""
        with torch.no_grad():
            embedding = self.model.embed(batch.image)
        self._embeddings.append(embedding.flatten(1, 2).cpu())
        self._indices.append(batch.index.cpu())

    def on_validation_epoch_start(self) -> None:
        if self.trainer.training:  # validation inside fit runs before on_train_epoch_end: build the bank now
            self._build_memory_bank()

    def on_train_epoch_end(self) -> None:
        self._build_memory_bank()

    def _build_memory_bank(self) -> None:
        if not self._embeddings:
            return
        embedding, index = torch.cat(self._embeddings), torch.cat(self._indices)
        self._embeddings, self._indices = [], []
        embedding, index = self._gather(embedding, index)
        order = index.argsort()
        index = index[order]
        keep = torch.ones_like(index, dtype=torch.bool)
        keep[1:] = index[1:] != index[:-1]  # DDP padding repeats a sample: keep it once
        patches = embedding[order[keep]].reshape(-1, embedding.shape[-1])
        self.model.fit_memory_bank(
            patches,
            self.hparams.coreset_ratio,
            projection_dim=self.hparams.projection_dim,
            seed=self.hparams.coreset_seed,
        )
        if self._trainer is not None:
            bank_size = float(self.model.memory_bank.shape[0])
            self.log("train/memory_bank_size", bank_size, sync_dist=False, rank_zero_only=True)

    def _gather(self, embedding: Tensor, index: Tensor) -> tuple[Tensor, Tensor]:
        """Every rank's (n_r, P, D) features and (n_r,) indices, concatenated on every rank."""
        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
            return embedding, index
        device = self.device
        size = torch.tensor([embedding.shape[0]], device=device)
        sizes = self.all_gather(size).flatten().tolist()
        most = int(max(sizes))
        padded = torch.zeros(most, *embedding.shape[1:], dtype=embedding.dtype, device=device)
        padded[: embedding.shape[0]] = embedding.to(device)
        padded_index = torch.full((most,), -1, dtype=torch.long, device=device)
        padded_index[: index.shape[0]] = index.to(device)
        features = self.all_gather(padded).cpu()  # (world, most, P, D)
        indices = self.all_gather(padded_index).cpu()  # (world, most)
        parts = [(features[r, : int(n)], indices[r, : int(n)]) for r, n in enumerate(sizes)]
        return torch.cat([f for f, _ in parts]), torch.cat([i for _, i in parts])

    # ------------------------------------------------------------------------------------------------ scoring
    def predict(self, image: Tensor) -> tuple[Tensor, Tensor]:
        output = self.model(image)
        return output.anomaly_map, output.pred_score

    def validation_step(self, batch: Batch, batch_idx: int) -> dict[str, Any] | None:
        """No validation loss; validation images are scored once the bank exists (not in the sanity check)."""
        if not self.model.is_fitted:
            return None
        return self.predict_batch(batch)

    def on_test_start(self) -> None:
        super().on_test_start()
        if not self.model.is_fitted:
            raise ConfigError(
                "PatchCore: the memory bank is empty; run `adbench fit` first or pass --ckpt_path of a fitted run"
            )
