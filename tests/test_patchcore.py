"""PatchCore: coreset, nearest neighbours, scoring, smoothing, fitting, checkpoints and DDP."""

from __future__ import annotations

import json

import lightning as L
import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from adbench.data import MVTecAD
from adbench.errors import ConfigError
from adbench.models import PatchCore
from adbench.models.components.coreset import greedy_coreset
from adbench.models.components.gaussian_blur import GaussianBlur2d
from adbench.models.components.nearest_neighbors import nearest_neighbors
from adbench.models.patchcore.torch_model import reweighted_image_score
from tests.conftest import make_mvtec_tree
from tests.test_reliability import csv_logger, only, run_adbench

# ------------------------------------------------------------------------------------------------ components


def test_greedy_coreset_known_answer_on_a_line():
    points = torch.tensor([[0.0], [1.0], [2.0], [10.0], [11.0], [20.0]])
    # From x=0: the farthest is 20, then 10 (10 from both), then 2 (the only point 2 away from every pick).
    assert greedy_coreset(points, 4, projection_dim=None, start=0).tolist() == [0, 5, 3, 2]
    assert greedy_coreset(points, 2, projection_dim=None, start=5).tolist() == [5, 0]
    assert sorted(greedy_coreset(points, 10, projection_dim=None).tolist()) == list(range(6))


def test_greedy_coreset_is_a_2_approximate_k_center_and_seeded():
    gen = torch.Generator().manual_seed(0)
    points = torch.cat([torch.randn(40, 5, generator=gen) * 0.1 + c for c in (0.0, 3.0, -3.0, 6.0)])
    picked = greedy_coreset(points, 4, projection_dim=None, seed=1)
    assert len(set(picked.tolist())) == 4
    radius = torch.cdist(points, points[picked]).amin(1).amax()
    assert radius < 1.0  # one pick per well-separated cluster (clusters are 3 apart, 0.1 wide)
    same = greedy_coreset(points, 30, projection_dim=3, seed=7)
    assert torch.equal(same, greedy_coreset(points, 30, projection_dim=3, seed=7))
    assert not torch.equal(same, greedy_coreset(points, 30, projection_dim=3, seed=8))


@pytest.mark.parametrize("block_elements", [7, 64, 2**23])
def test_blocked_nearest_neighbors_equal_brute_force(block_elements):
    gen = torch.Generator().manual_seed(0)
    query, bank = torch.randn(37, 6, generator=gen), torch.randn(53, 6, generator=gen)
    distances, indices = nearest_neighbors(query, bank, k=3, block_elements=block_elements)
    full = torch.cdist(query, bank)
    expected, expected_index = full.topk(3, dim=1, largest=False)
    assert torch.allclose(distances, expected, atol=1e-5)
    assert torch.equal(indices, expected_index)


def test_reweighted_image_score_known_answer():
    bank = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 3.0]])
    embedding = torch.tensor([[[0.0, 0.5], [2.0, 0.0]]])  # (1, 2 patches, 2)
    distances, locations = nearest_neighbors(embedding[0], bank, k=1)
    patch_scores, locations = distances.T, locations.T  # (1, 2)
    # Worst patch (2, 0): score 1 (to bank row 1); bank row 1's 2 nearest bank rows are itself and row 0,
    # at distances 1 and 2 from the patch: weight = 1 - e^1 / (e^1 + e^2).
    score = reweighted_image_score(patch_scores, locations, embedding, bank, num_neighbors=2)
    weight = 1 - np.exp(1) / (np.exp(1) + np.exp(2))
    assert score.item() == pytest.approx(weight * 1.0, abs=1e-6)
    plain = reweighted_image_score(patch_scores, locations, embedding, bank, num_neighbors=1)
    assert plain.item() == pytest.approx(1.0)


def test_gaussian_blur_equals_scipy_with_reflected_borders():
    maps = torch.rand(2, 1, 40, 37, generator=torch.Generator().manual_seed(0))
    blurred = GaussianBlur2d(sigma=4.0)(maps)
    assert GaussianBlur2d(sigma=4.0).kernel.numel() == 33
    for i in range(2):  # torch's "reflect" padding is scipy's "mirror" (edge pixel not repeated)
        expected = gaussian_filter(maps[i, 0].double().numpy(), sigma=4.0, mode="mirror", truncate=4.0)
        assert np.allclose(blurred[i, 0].numpy(), expected, atol=1e-5)


# ----------------------------------------------------------------------------------------------- the model


def small_patchcore(**kwargs) -> PatchCore:
    args = dict(backbone="tf_efficientnet_lite0", layers=(2, 3), pretrained=False, coreset_ratio=0.25)
    return PatchCore(**{**args, **kwargs})


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """A PatchCore fitted and tested on the tiny tree (bright square defects), with its checkpoint."""
    tmp = tmp_path_factory.mktemp("patchcore")
    root = make_mvtec_tree(
        tmp / "data", category="bottle", size=64, n_train=10, n_test_good=4, n_per_defect=3
    )
    data = MVTecAD(
        root,
        "bottle",
        image_size=64,
        batch_size=4,
        num_workers=0,
        val_split=0.2,
        mean=(0.5,) * 3,
        std=(0.5,) * 3,
    )
    model = small_patchcore(pretrained=True)  # real ImageNet weights, offline (the lite0 pip package)
    trainer = L.Trainer(
        max_epochs=1, logger=False, default_root_dir=tmp, enable_progress_bar=False, num_sanity_val_steps=0
    )
    trainer.fit(model, datamodule=data)
    trainer.save_checkpoint(tmp / "patchcore.ckpt")
    trainer.test(model, datamodule=data, verbose=False)
    return model, data, tmp


def test_fit_builds_the_coreset_of_the_training_patches(fitted):
    model, data, _ = fitted
    patches = len(data.dataset("train")) * 8 * 8  # stride 8 at 64 px
    assert model.model.memory_bank.shape == (int(patches * 0.25), 40 + 112)
    assert not any(p.requires_grad for p in model.model.parameters())  # frozen: nothing to train


def test_trained_model_beats_chance_on_known_defects(fitted):
    model, data, tmp = fitted
    results = json.loads((tmp / "metrics.json").read_text())
    assert results["model"] == "patchcore"
    assert results["image_AUROC"] > 0.8 and results["pixel_AUROC"] > 0.8
    assert results["train_s"] > 0


def test_prediction_shapes_and_map_at_input_resolution(fitted):
    model, data, _ = fitted
    batch = next(iter(data.test_dataloader()))
    model.eval()
    out = model.predict_batch(batch)
    assert out["anomaly_map"].shape == batch.mask.shape and out["pred_score"].shape == (batch.batch_size,)
    output = model.model(batch.image)  # the torch model predicts on its own
    assert torch.equal(output.anomaly_map, out["anomaly_map"]) and output.patch_scores.shape[-2:] == (8, 8)


def test_checkpoint_round_trip_loads_safely_and_predicts_the_same(fitted):
    model, data, tmp = fitted
    checkpoint = torch.load(tmp / "patchcore.ckpt", weights_only=True)
    assert checkpoint["state_dict"]["model.memory_bank"].shape == model.model.memory_bank.shape
    restored = PatchCore.load_from_checkpoint(tmp / "patchcore.ckpt", weights_only=True)
    batch = next(iter(data.test_dataloader()))
    model.eval(), restored.eval()
    assert torch.equal(restored.model.memory_bank, model.model.memory_bank)
    assert torch.allclose(restored.predict(batch.image)[1], model.predict(batch.image)[1])


def test_unfitted_model_and_bad_options_raise_config_errors():
    with pytest.raises(ConfigError, match="memory bank is empty"):
        small_patchcore().model(torch.zeros(1, 3, 64, 64))
    for bad in ({"coreset_ratio": 0.0}, {"coreset_ratio": 1.5}, {"num_neighbors": 0}, {"sigma": -1.0},
                {"embedding_dim": 0}, {"projection_dim": 0}, {"layers": ()}):  # fmt: skip
        with pytest.raises(ConfigError):
            small_patchcore(**bad)


def test_fixed_embedding_dim_gives_each_stage_an_equal_share():
    model = small_patchcore(embedding_dim=64).model
    embedding = model.embed(torch.randn(2, 3, 64, 64))
    assert embedding.shape == (2, 8, 8, 64)
    features = [model.local_average(f) for f in model.backbone(torch.randn(1, 3, 64, 64))]
    assert [f.shape[1] for f in features] == [40, 112] and model._stage_dims == [32, 32]


def test_ddp_two_processes_build_the_same_bank_and_metrics_as_one(tmp_path):
    root = make_mvtec_tree(
        tmp_path / "data", category="bottle", size=32, n_train=9, n_test_good=3, n_per_defect=3
    )
    base = [
        "--config", "configs/patchcore_demo.yaml", "--model.init_args.pretrained=false",
        "--model.init_args.coreset_ratio=0.3", "--data.class_path=adbench.data.MVTecAD",
        f"--data.init_args.root={root}", "--data.init_args.category=bottle", "--data.init_args.image_size=32",
        "--data.init_args.batch_size=2", "--data.init_args.val_split=0", "--trainer.limit_val_batches=0",
        "--trainer.enable_progress_bar=false", "--seed_everything=0",
    ]  # fmt: skip
    ddp = ["--trainer.strategy=ddp", "--trainer.devices=2", "--trainer.accelerator=cpu"]
    single = ["--trainer.devices=1", "--trainer.accelerator=cpu"]
    banks, results = {}, {}
    for name, extra in [("single", single), ("ddp", ddp)]:
        fit = run_adbench("fit", *base, *extra, *csv_logger(tmp_path / name))
        assert fit.returncode == 0, fit.stderr[-3000:]
        checkpoint = only((tmp_path / name).rglob("last.ckpt"))
        banks[name] = torch.load(checkpoint, weights_only=True)["state_dict"]["model.memory_bank"]
        test = run_adbench(
            "test", *base, *extra, *csv_logger(tmp_path / f"{name}_test"), f"--ckpt_path={checkpoint}"
        )
        assert test.returncode == 0, test.stderr[-3000:]
        results[name] = json.loads(only((tmp_path / f"{name}_test").rglob("metrics.json")).read_text())
    assert banks["single"].shape[0] == int(9 * 4 * 4 * 0.3)  # 9 images (odd: DDP pads one), 4x4 patches
    # Same patches picked in the same order; values equal up to the backbone's float rounding, which depends
    # on how images are batched and on the thread count.
    assert torch.allclose(banks["ddp"], banks["single"], atol=1e-5, rtol=0)
    for metric in ("image_AUROC", "pixel_AUROC", "pixel_AUPRO", "image_AP"):
        assert results["ddp"][metric] == pytest.approx(results["single"][metric], abs=1e-6), metric
