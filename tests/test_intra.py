import lightning as L
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import ModelCheckpoint
from skimage.metrics import structural_similarity

from adbench.data import MVTecAD
from adbench.data.batch import Batch
from adbench.metrics import image_auroc
from adbench.models.components.gms import GMS_C, gms_distance, gms_map, multiscale_gms_distance_map
from adbench.models.components.ssim import gaussian_filter, mean_filter, ssim, ssim_map
from adbench.models.intra import GMSAnomalyMap, InTra, InTraModel
from adbench.models.intra.loss import inpainting_loss
from adbench.models.intra.torch_model import (
    FeatureSelfAttention,
    inference_windows,
    patchify,
    unpatchify,
    window_origins,
)
from tests.conftest import make_mvtec_tree


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny tensors: on a shared 2-core machine thread synchronization costs more than it saves."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def small_intra(**kwargs) -> InTra:
    args = dict(
        patch_size=8,
        window_size=5,
        embed_dim=32,
        depth=3,
        heads=2,
        windows_per_image=8,
        window_batch_size=16,
        mean_filter_size=3,
        gaussian_sigma=1.0,
        map_scales=(1.0, 0.5),  # the paper's 1/2 and 1/4 of a 16 px patch, for 8 px patches
        lr=1e-3,
    )
    return InTra(**{**args, **kwargs})


def make_batch(images: torch.Tensor) -> Batch:
    n = images.shape[0]
    return Batch(
        images,
        torch.zeros(n, dtype=torch.long),
        torch.zeros(n, 1, *images.shape[-2:]),
        [str(i) for i in range(n)],
        torch.arange(n),
    )


# ------------------------------------------------------------------------------------------------- windows
@pytest.mark.parametrize("window", [1, 3, 4, 5, 7])
def test_inference_windows_cover_every_patch_exactly_once(window):
    for rows in range(1, 13):
        for cols in (1, 2, 7, 8, 13):
            top, left, row, col = inference_windows(rows, cols, window)
            wh, ww = min(window, rows), min(window, cols)
            assert ((top >= 0) & (top + wh <= rows) & (left >= 0) & (left + ww <= cols)).all()
            assert ((row >= 0) & (row < wh) & (col >= 0) & (col < ww)).all()
            covered = torch.zeros(rows, cols, dtype=torch.long)
            covered.index_put_((top + row, left + col), torch.ones_like(top), accumulate=True)
            assert (covered == 1).all()
            # row-major order: entry i inpaints patch (i // cols, i % cols)
            assert torch.equal(top + row, torch.arange(rows * cols) // cols)
            assert torch.equal(left + col, torch.arange(rows * cols) % cols)


def test_window_placement_follows_the_paper_at_the_borders():
    start, offset = window_origins(16, 7)
    assert start.tolist() == [0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 9]
    assert offset.tolist() == [0, 1, 2, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 4, 5, 6]  # centered away from borders
    assert window_origins(4, 7)[0].tolist() == [0, 0, 0, 0]  # grid shorter than the window


@pytest.mark.parametrize("mode", ["uniform", "inference"])
def test_training_windows_stay_inside_the_grid(mode):
    model = InTraModel(patch_size=8, window_size=5, embed_dim=16, depth=1, heads=2)
    top, left, row, col = model.sample_windows(4000, 9, 4, mode=mode)
    assert ((top >= 0) & (top + 5 <= 9) & (left == 0) & (row < 5) & (col < 4)).all()
    if mode == "inference":  # exactly the inference placement of the hidden patch
        start, offset = window_origins(9, 5)
        assert torch.equal(start[top + row], top) and torch.equal(offset[top + row], row)
        assert set((top + row).tolist()) == set(range(9))
    else:
        assert set(row.tolist()) == set(range(5)) and set(top.tolist()) == set(range(5))


def test_patchify_round_trip_and_order():
    images = torch.arange(2 * 3 * 16 * 24, dtype=torch.float32).reshape(2, 3, 16, 24)
    patches = patchify(images, 8)
    assert patches.shape == (2, 2, 3, 3 * 64)
    assert torch.equal(patches[1, 1, 2].reshape(3, 8, 8), images[1, :, 8:16, 16:24])
    assert torch.equal(unpatchify(patches, 8, 3), images)


# ---------------------------------------------------------------------------------------------- SSIM, GMS
def test_ssim_of_constant_images_is_the_luminance_term():
    a, b = 0.2, 0.6
    x, y = torch.full((1, 3, 16, 16), a), torch.full((1, 3, 16, 16), b)
    c1 = 0.01**2
    expected = (2 * a * b + c1) / (a**2 + b**2 + c1)
    assert ssim_map(x, y).shape == (1, 3, 6, 6)
    assert torch.allclose(ssim_map(x, y), torch.tensor(expected), atol=1e-6)
    assert ssim(x, x).item() == pytest.approx(1.0, abs=1e-6)


def test_ssim_matches_skimage_gaussian_ssim():
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(32, 40)).astype(np.float64)
    y = np.clip(x + rng.normal(0, 0.2, size=x.shape), 0, 1)
    reference = structural_similarity(
        x, y, data_range=1.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
    )
    ours = ssim(torch.tensor(x)[None, None], torch.tensor(y)[None, None]).item()
    assert ours == pytest.approx(reference, abs=1e-6)


def test_gms_of_linear_ramps_by_hand():
    a, b = 0.05, 0.02
    ramp = torch.arange(12, dtype=torch.float32).expand(1, 1, 10, 12)
    # Prewitt / 3 of a ramp with slope s is 2 s in the interior, so GMS = (8ab + c) / (4a^2 + 4b^2 + c)
    expected = (8 * a * b + GMS_C) / (4 * a**2 + 4 * b**2 + GMS_C)
    gms = gms_map(a * ramp, b * ramp)
    assert torch.allclose(gms[..., 1:-1, 1:-1], torch.tensor(expected), atol=1e-5)
    # replicate padding: at the left/right border the difference spans one step, so the magnitude is s
    border = (2 * a * b + GMS_C) / (a**2 + b**2 + GMS_C)
    assert torch.allclose(gms[..., 1:-1, 0], torch.tensor(border), atol=1e-5)
    assert torch.allclose(gms_map(a * ramp, a * ramp), torch.tensor(1.0))
    assert gms_distance(a * ramp, b * ramp, scales=(1.0,)).item() == pytest.approx(
        1 - gms.mean().item(), abs=1e-6
    )


def test_multiscale_gms_map_is_zero_for_identical_images_and_full_size():
    x = torch.rand(2, 3, 32, 32)
    y = x.clone()
    y[..., 8:16, 8:16] = 1.0
    distance = multiscale_gms_distance_map(x, y)
    assert distance.shape == (2, 1, 32, 32)
    assert multiscale_gms_distance_map(x, x).abs().max() < 1e-6
    assert distance[..., 8:16, 8:16].mean() > 5 * distance[..., 24:, 24:].mean()


def test_anomaly_map_uses_the_map_scales_not_the_loss_scales():
    model = InTra(patch_size=8, embed_dim=32, depth=2, heads=2, gms_scales=(1.0,), map_scales=(0.5, 0.25))
    assert model.scorer.scales == (0.5, 0.25) and InTra().scorer.scales == (0.5, 0.25)  # paper: 1/2, 1/4
    x = torch.full((1, 3, 32, 32), 0.5)
    y = x.clone()
    y[..., 16:20, 16:20] = 0.9  # a 4 x 4 defect; at 1/4 scale one pixel, at 1/2 a 2 x 2 block
    # unfiltered, the map is the mean of the upsampled per-scale maps, each by hand from gms_map
    scorer = GMSAnomalyMap((0.5, 0.25), mean_filter_size=1, gaussian_sigma=0)
    by_hand = torch.stack(
        [
            F.interpolate(
                1 - gms_map(F.avg_pool2d(x, f), F.avg_pool2d(y, f)).mean(1, keepdim=True),
                size=(32, 32),
                mode="bilinear",
                align_corners=False,
            )
            for f in (2, 4)
        ]
    ).mean(0)
    assert torch.allclose(scorer(x, y), by_hand**2, atol=1e-6)
    # the full-resolution map (not the paper's) flags a one-pixel speck as strongly as the defect itself
    speck = x.clone()
    speck[..., 5, 5] = 0.9
    full = GMSAnomalyMap((1.0,), mean_filter_size=1, gaussian_sigma=0)
    assert full(x, speck).max() > 0.5 * full(x, y).max()
    assert scorer(x, speck).max() < 0.5 * scorer(x, y).max()


def test_filters_preserve_constants_and_mass():
    x = torch.full((1, 1, 9, 9), 3.0)
    assert torch.allclose(mean_filter(x, 5), x) and torch.allclose(gaussian_filter(x, 2.0), x)
    impulse = torch.zeros(1, 1, 41, 41)
    impulse[..., 20, 20] = 1
    assert gaussian_filter(impulse, 4.0).sum().item() == pytest.approx(1.0, abs=1e-4)
    assert mean_filter(impulse, 21)[..., 10:31, 10:31].min().item() == pytest.approx(1 / 441)


def test_loss_combines_l2_gms_and_ssim_with_the_paper_weights():
    torch.manual_seed(0)
    pred, target = torch.rand(4, 3, 16, 16), torch.rand(4, 3, 16, 16)
    out = inpainting_loss(pred, target)
    assert out["l2"].item() == pytest.approx(((pred - target) ** 2).mean().item())
    assert out["loss"].item() == pytest.approx((out["l2"] + 0.01 * out["gms"] + 0.01 * out["ssim"]).item())
    assert inpainting_loss(target, target)["loss"].item() == pytest.approx(0.0, abs=1e-6)


# ------------------------------------------------------------------------------------------------- model
def test_paper_configuration_sizes():
    with torch.device("meta"):
        model = InTraModel()
    assert model.patch_embed.in_features == 3 * 16 * 16 and model.patch_embed.out_features == 512
    assert model.position.shape == (49, 512) and len(model.blocks) == 13
    attention = model.blocks[0].attn
    assert [m.out_features for m in attention.query if hasattr(m, "out_features")] == [1024, 256]
    assert attention.value.out_features == 512
    with torch.device("meta"):
        assert InTraModel(position_embedding="global").position.shape == (32 * 32, 512)


def test_feature_self_attention_is_permutation_equivariant():
    torch.manual_seed(0)
    attention = FeatureSelfAttention(32, 4)
    x = torch.randn(3, 9, 32)
    perm = torch.randperm(9)
    assert torch.allclose(attention(x)[:, perm], attention(x[:, perm]), atol=1e-5)


@pytest.mark.parametrize("position_embedding", ["local", "global"])
def test_inpaint_token_hides_the_inpainted_patch(position_embedding):
    torch.manual_seed(0)
    model = InTraModel(
        patch_size=8,
        window_size=5,
        embed_dim=32,
        depth=3,
        heads=2,
        position_embedding=position_embedding,
        max_grid_size=8,
    ).eval()
    image = torch.rand(2, 3, 64, 64)
    changed = image.clone()
    changed[1, :, 24:32, 40:48] = torch.rand(3, 8, 8)  # patch (3, 5) of image 1
    with torch.no_grad():
        before, after = model.reconstruct(image, chunk=37), model.reconstruct(changed, chunk=37)
    assert torch.equal(before[0], after[0])  # other images are independent
    assert torch.allclose(before[1, :, 24:32, 40:48], after[1, :, 24:32, 40:48], atol=1e-6)
    assert not torch.allclose(before[1, :, 24:32, 32:40], after[1, :, 24:32, 32:40], atol=1e-4)  # a neighbour


def test_reconstruct_matches_single_window_calls():
    torch.manual_seed(0)
    model = InTraModel(patch_size=8, window_size=3, embed_dim=16, depth=2, heads=2).eval()
    image = torch.rand(1, 3, 32, 40)
    with torch.no_grad():
        full = model.reconstruct(image, chunk=1000)
        patches = patchify(image, 8)
        tokens = model.embed(patches)
        one = torch.tensor([0])
        # patch (0, 4): window starts at (0, 2), patch at (0, 2) inside it
        single = model.inpaint(tokens, one, one * 0, one * 0 + 2, one * 0, one * 0 + 2)
    assert torch.allclose(full[0, :, 0:8, 32:40].reshape(-1), single.reshape(-1), atol=1e-6)


def test_outputs_at_input_resolution_and_score_is_max():
    model = small_intra().eval()
    batch = make_batch(torch.rand(3, 3, 48, 40))
    out = model.predict_batch(batch)
    assert out["anomaly_map"].shape == (3, 1, 48, 40) and out["pred_score"].shape == (3,)
    assert torch.allclose(out["pred_score"], out["anomaly_map"].flatten(1).amax(1))
    assert model.anomaly_map(torch.rand(2, 3, 44, 30)).shape == (2, 1, 48, 32)


def test_a_few_steps_reduce_the_loss():
    torch.manual_seed(0)
    model = small_intra()
    batch = make_batch(torch.rand(2, 3, 32, 32))
    optimizer = model.configure_optimizers()

    def loss() -> torch.Tensor:
        torch.manual_seed(1)  # the same windows every time
        return model.compute_loss(batch)["loss"]

    first = loss().item()
    for _ in range(10):
        optimizer.zero_grad()
        loss().backward()
        optimizer.step()
    assert loss().item() < 0.8 * first


def test_fit_runs_windows_per_image_in_optimizer_steps_and_saves_the_mean_map(tmp_path):
    L.seed_everything(0)
    root = make_mvtec_tree(tmp_path, category="bottle", size=32, n_train=9, n_test_good=2, n_per_defect=1)
    dm = MVTecAD(
        root=root,
        category="bottle",
        image_size=32,
        batch_size=4,
        num_workers=0,
        val_split=0.1,
        mean=(0.0,) * 3,
        std=(1.0,) * 3,
    )
    model = small_intra(windows_per_image=10, window_batch_size=8)  # 4 images -> 40 windows -> 5 steps
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpt", monitor="val/loss", save_last=True)
    trainer = L.Trainer(
        max_epochs=2,
        logger=False,
        enable_progress_bar=False,
        callbacks=[checkpoint],
        default_root_dir=tmp_path,
    )
    trainer.fit(model, datamodule=dm)
    assert trainer.global_step == 2 * (5 + 5)  # 8 training images: two batches of 4 per epoch
    assert model.scorer.fitted and model.scorer.mean_map.shape == (1, 1, 32, 32)
    saved = torch.load(checkpoint.best_model_path, weights_only=True)["state_dict"]
    assert torch.equal(saved["scorer.mean_map"], model.scorer.mean_map)
    restored = InTra.load_from_checkpoint(checkpoint.best_model_path)
    assert torch.equal(restored.scorer.mean_map, model.scorer.mean_map)
    image = dm.dataset("test")[0]["image"][None]
    assert torch.allclose(restored.eval().anomaly_map(image), model.eval().anomaly_map(image), atol=1e-6)
    # a mean map fitted at other GMS scales, or without its scales (older checkpoints), is dropped, not used
    with pytest.warns(UserWarning, match="refitted"):
        other = InTra.load_from_checkpoint(checkpoint.best_model_path, map_scales=(0.5, 0.25))
    assert not other.scorer.fitted
    untagged = {k: v for k, v in saved.items() if k != "scorer.mean_map_scales"}
    with pytest.warns(UserWarning, match="refitted"):
        restored.load_state_dict(untagged)
    assert not restored.scorer.fitted
    trainer.test(restored, datamodule=dm, verbose=False)  # refits the mean map at test start
    assert torch.allclose(restored.scorer.mean_map, model.scorer.mean_map, atol=1e-6)


def test_trained_intra_beats_chance_on_known_defects(tmp_path):
    """A short fit of a small model inpaints the stripes but not the red squares."""
    L.seed_everything(0)
    root = make_mvtec_tree(tmp_path, category="bottle", size=64, n_train=12, n_test_good=6, n_per_defect=4)
    dm = MVTecAD(
        root=root,
        category="bottle",
        image_size=64,
        batch_size=6,
        num_workers=0,
        val_split=0,
        mean=(0.0,) * 3,
        std=(1.0,) * 3,
    )
    model = small_intra(windows_per_image=64, window_batch_size=64, embed_dim=48, lr=2e-3)
    trainer = L.Trainer(
        max_epochs=6,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        default_root_dir=tmp_path,
        callbacks=[],
    )
    trainer.fit(model, datamodule=dm)
    assert model.scorer.fitted
    trainer.test(model, datamodule=dm, verbose=False)
    model.eval()
    scores, labels = [], []
    for batch in dm.test_dataloader():
        scores.append(model.predict_batch(batch)["pred_score"].detach())
        labels.append(batch.label)
    assert image_auroc(torch.cat(scores), torch.cat(labels)) > 0.8
    assert (tmp_path / "metrics.json").is_file()
