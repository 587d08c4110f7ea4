"""DSR: paper shapes, the EMA codebook, feature-space anomalies, focal loss, schedules and stage chaining."""

import math
import pickle
import warnings

import lightning as L
import pytest
import torch

from adbench.data import MVTecAD
from adbench.data.batch import Batch
from adbench.data.image_folder import ImageFolder
from adbench.errors import ConfigError, WeightsError
from adbench.models.components.vector_quantizer import EMAVectorQuantizer, nearest_code
from adbench.models.dsr import DSR, DSRModel, DSRStage1
from adbench.models.dsr.anomaly_generation import replace_with_distant_codes
from adbench.models.dsr.loss import segmentation_focal_loss
from adbench.models.dsr.weights import official_stage1_state, stage1_state
from tests.conftest import make_mvtec_tree

TINY = dict(hidden_channels=16, residual_channels=8, residual_layers=1, num_embeddings=32, embedding_dim=8)
TINY_HEADS = dict(unet_width=8, bottleneck_channels=8)


def batch_of(images: torch.Tensor) -> Batch:
    n = images.shape[0]
    return Batch(images, torch.zeros(n, dtype=torch.long), torch.zeros(n, 1, *images.shape[-2:]),
                 [str(i) for i in range(n)], torch.arange(n))  # fmt: skip


def trainer(tmp_path, **kwargs) -> L.Trainer:
    args = dict(logger=False, enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
                num_sanity_val_steps=0, limit_val_batches=0)  # fmt: skip
    return L.Trainer(**{**args, **kwargs})


# ------------------------------------------------------------------------------------------------ architecture
def test_paper_sizes_at_256():
    """Codebooks 4096 x 128; hi codes at 64x64 and lo codes at 32x32; all maps at the input resolution."""
    model = DSRModel().eval()
    assert model.vq.quantizer_hi.codebook.shape == model.vq.quantizer_lo.codebook.shape == (4096, 128)
    assert 38.0e6 < sum(p.numel() for p in model.parameters()) < 38.5e6  # + 2.1M codebook/EMA buffers = 40.3M
    with torch.no_grad():
        image = torch.rand(1, 3, 256, 256)
        codes = model.vq.encode(image)
        out = model(image)
    assert codes.q_hi.shape == (1, 128, 64, 64) and codes.q_lo.shape == (1, 128, 32, 32)
    assert out.object_image.shape == out.general_image.shape == (1, 3, 256, 256)
    assert out.detection_logits.shape == out.upsampled_logits.shape == (1, 2, 256, 256)
    assert out.anomaly_map.shape == (1, 1, 256, 256)


def test_image_sides_must_be_multiples_of_16():
    with pytest.raises(ConfigError, match="multiples of 16 and at least 64"):
        DSRModel(**TINY, **TINY_HEADS)(torch.rand(1, 3, 72, 64))


# ------------------------------------------------------------------------------------------------ quantizer
def test_nearest_code_matches_brute_force():
    generator = torch.Generator().manual_seed(0)
    flat, codebook = torch.randn(2000, 16, generator=generator), torch.randn(300, 16, generator=generator)
    expected = torch.cdist(flat.double(), codebook.double()).argmin(dim=1)
    assert torch.equal(nearest_code(flat, codebook), expected)
    # The paper's 4096 codes: on a CPU the rows go in blocks of 256 (here 4 blocks, the last one partial).
    flat, codebook = torch.randn(1000, 8, generator=generator), torch.randn(4096, 8, generator=generator)
    expected = torch.cdist(flat.double(), codebook.double()).argmin(dim=1)
    assert torch.equal(nearest_code(flat, codebook), expected)


def test_ema_update_known_answer_and_straight_through_gradient():
    vq = EMAVectorQuantizer(num_embeddings=2, embedding_dim=1, commitment_cost=0.25, decay=0.5, epsilon=0.0)
    vq.codebook.copy_(torch.tensor([[0.0], [10.0]]))
    vq.ema_weight.copy_(torch.tensor([[0.0], [10.0]]))
    vq.cluster_size.copy_(torch.tensor([1.0, 1.0]))
    z = torch.tensor([1.0, 2.0, 9.0]).view(1, 1, 1, 3).requires_grad_(True)
    out = vq.train()(z)
    # codes before the update: 0, 0, 10; commitment 0.25 * mean((1, 4, 1))
    assert out.indices.tolist() == [[[0, 0, 1]]]
    assert out.quantized.detach().flatten().tolist() == [0.0, 0.0, 10.0]
    assert out.loss.item() == pytest.approx(0.25 * 2.0)
    # N = 0.5 * (1, 1) + 0.5 * (2, 1) = (1.5, 1); m = 0.5 * (0, 10) + 0.5 * (3, 9) = (1.5, 9.5)
    assert vq.cluster_size.tolist() == pytest.approx([1.5, 1.0])
    assert vq.ema_weight.flatten().tolist() == pytest.approx([1.5, 9.5])
    assert vq.codebook.flatten().tolist() == pytest.approx([1.0, 9.5])
    out.quantized.sum().backward()  # straight-through: d quantized / d z = identity
    assert z.grad.flatten().tolist() == [1.0, 1.0, 1.0]
    before = vq.codebook.clone()
    vq.eval()(torch.randn(1, 1, 4, 4))
    assert torch.equal(vq.codebook, before)  # frozen in eval mode


def test_codebook_initialized_from_data_and_dead_codes_restarted():
    torch.manual_seed(0)
    z = torch.tensor([5.0, 6.0, 7.0]).view(1, 1, 1, 3)
    fresh = EMAVectorQuantizer(num_embeddings=3, embedding_dim=1, init_from_data=True).train()
    out = fresh(z)  # the N(0, 1) codes are replaced by encoder vectors before the first assignment
    assert set(out.quantized.flatten().tolist()) <= {5.0, 6.0, 7.0}
    vq = EMAVectorQuantizer(
        num_embeddings=2, embedding_dim=1, decay=0.5, epsilon=0.0, dead_code_threshold=1.0
    )
    vq.codebook.copy_(torch.tensor([[0.0], [100.0]]))
    vq.ema_weight.copy_(torch.tensor([[0.0], [100.0]]))
    vq.cluster_size.copy_(torch.tensor([1.0, 1.0]))
    vq.train()(torch.tensor([1.0, 2.0, 3.0]).view(1, 1, 1, 3))
    # code 1 won nothing: count 0.5 < 1, so it restarts at an encoder vector with count 1
    assert vq.codebook[1].item() in (1.0, 2.0, 3.0) and vq.cluster_size.tolist() == [2.0, 1.0]


# ------------------------------------------------------------------------------------------- feature anomalies
def test_feature_anomalies_replace_codes_only_inside_the_mask_with_distant_codes():
    generator = torch.Generator().manual_seed(0)
    K, D = 100, 4
    codebook = torch.randn(K, D, generator=generator)
    features = torch.randn(2, D, 6, 6, generator=generator)
    quantized = codebook[nearest_code(features.permute(0, 2, 3, 1).reshape(-1, D), codebook)]
    quantized = quantized.view(2, 6, 6, D).permute(0, 3, 1, 2)
    mask = (torch.rand(2, 1, 6, 6, generator=generator) > 0.5).float()
    out = replace_with_distant_codes(features, quantized, codebook, mask, torch.tensor([1.0, 0.3]), generator)
    inside = mask.bool().expand_as(out)
    assert torch.equal(out[~inside], quantized[~inside])
    vectors = out.permute(0, 2, 3, 1)[mask[:, 0].bool()]  # (n, D)
    feats = features.permute(0, 2, 3, 1)[mask[:, 0].bool()]
    index = (vectors[:, None] == codebook[None]).all(-1).float().argmax(1)
    assert torch.equal(codebook[index], vectors)  # every replacement is a codebook vector
    ranks = torch.cdist(feats, codebook).argsort(1).argsort(1).gather(1, index[:, None]).squeeze(1)
    assert ranks.min() >= 5  # never among the 5 % nearest codes
    first = mask[0, 0].bool().sum()
    assert ranks[first:].max() < int(0.3 * K) + 1  # strength 0.3: only the nearest 31 codes


def test_synthesized_codes_follow_the_mask():
    torch.manual_seed(0)
    model = DSRModel(**TINY, **TINY_HEADS).eval()
    image = torch.rand(4, 3, 64, 64)
    normal = model.synthesize_codes(image, torch.zeros(4, 1, 64, 64), torch.Generator().manual_seed(0))
    assert torch.equal(normal.q_hi, normal.q_hi_normal) and torch.equal(normal.q_lo, normal.q_lo_normal)
    assert normal.target.sum() == 0
    mask = torch.zeros(4, 1, 64, 64)
    mask[:, :, 16:32, 8:40] = 1
    synthetic = model.synthesize_codes(image, mask, torch.Generator().manual_seed(1))
    changed_lo = (synthetic.q_lo != synthetic.q_lo_normal).any(1)  # (B, 8, 8)
    assert not changed_lo[:, :2].any() and not changed_lo[:, 4:].any()  # lo cells outside rows 2..3 untouched
    assert synthetic.target.shape == (4, 1, 64, 64)
    assert set(synthetic.target.unique().tolist()) <= {0.0, 1.0}
    assert synthetic.target[:, :, 16:32, 8:40].min() == 1 and synthetic.target[:, :, :16].max() == 0


# ------------------------------------------------------------------------------------------------------- losses
def test_focal_loss_known_values():
    logits = torch.zeros(1, 2, 1, 2)
    logits[0, 1, 0, :] = math.log(3.0)  # p(anomalous) = 0.75 at both pixels
    mask = torch.tensor([[[[1.0, 0.0]]]])
    expected = (-(0.25**2) * math.log(0.75) - (0.75**2) * math.log(0.25)) / 2
    assert segmentation_focal_loss(logits, mask).item() == pytest.approx(expected, rel=1e-6)
    assert segmentation_focal_loss(logits, mask, gamma=0.0).item() == pytest.approx(
        -(math.log(0.75) + math.log(0.25)) / 2, rel=1e-6
    )


# ---------------------------------------------------------------------------------------------------- training
@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return make_mvtec_tree(tmp_path_factory.mktemp("dsr") / "mvtec", category="bottle", size=64, n_train=8)


def mvtec(tree, size=64) -> MVTecAD:
    return MVTecAD(root=tree, category="bottle", image_size=size, batch_size=4, num_workers=0, val_split=0,
                   mean=(0.0,) * 3, std=(1.0,) * 3)  # fmt: skip


class LearningRates(L.Callback):
    def __init__(self):
        self.values = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.values.append(trainer.optimizers[0].param_groups[0]["lr"])


def test_learning_rate_drops_at_the_milestone_and_resumes(tmp_path, tree):
    model = DSR(stage=2, lr=1e-3, lr_milestones=[3], lr_gamma=0.1, eval_crop=None, **TINY, **TINY_HEADS)
    lrs = LearningRates()
    ckpt = L.pytorch.callbacks.ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer(tmp_path, max_steps=2, callbacks=[lrs, ckpt]).fit(model, datamodule=mvtec(tree))
        resumed = DSR(stage=2, lr=1e-3, lr_milestones=[3], lr_gamma=0.1, eval_crop=None, **TINY, **TINY_HEADS)
        fit = trainer(tmp_path, max_steps=5, callbacks=[lrs])
        fit.fit(resumed, datamodule=mvtec(tree), ckpt_path=str(tmp_path / "ckpt" / "last.ckpt"))
    assert lrs.values == pytest.approx([1e-3, 1e-3, 1e-3, 1e-4, 1e-4])
    assert fit.global_step == 5 and int(resumed.stage_steps[0]) == 5


def test_stages_chain_through_checkpoints(tmp_path, tree):
    L.seed_everything(0)
    data = ImageFolder(root=tree, pattern="*/train/good/*", image_size=64, batch_size=4, num_workers=0,
                       mean=(0.0,) * 3, std=(1.0,) * 3, val_split=0)  # fmt: skip
    assert len(data.dataset("train")) == 8 and all(s.label == 0 for s in data.dataset("train").samples)
    stage1 = DSRStage1(**TINY)
    trainer(tmp_path / "s1", max_steps=2).fit(stage1, datamodule=data)
    first = tmp_path / "stage1.ckpt"
    stage1.trainer.save_checkpoint(first)

    stage2 = DSR(stage=2, init_from=str(first), **TINY, **TINY_HEADS)
    fit2 = trainer(tmp_path / "s2", max_steps=2)
    fit2.fit(stage2, datamodule=mvtec(tree))
    assert torch.equal(stage2.model.vq.quantizer_hi.codebook, stage1.model.quantizer_hi.codebook)
    assert torch.equal(stage2.model.vq.hi_encoder.down1.weight, stage1.model.hi_encoder.down1.weight)
    second = tmp_path / "stage2.ckpt"
    fit2.save_checkpoint(second)
    with pytest.warns(UserWarning, match="stage 3 .* was not trained"):
        fit2.test(stage2, datamodule=mvtec(tree), verbose=False)

    stage3 = DSR(stage=3, init_from=str(second), **TINY, **TINY_HEADS)
    fit3 = trainer(tmp_path / "s3", max_steps=2)
    fit3.fit(stage3, datamodule=mvtec(tree))
    for name in ("restrict_hi", "object_decoder", "detector"):
        ours, theirs = getattr(stage3.model, name).state_dict(), getattr(stage2.model, name).state_dict()
        assert all(torch.equal(v, theirs[k]) for k, v in ours.items())
    assert stage3.stage_steps.tolist() == [2, 2] and stage3.upsampler_trained
    third = tmp_path / "stage3.ckpt"
    fit3.save_checkpoint(third)

    loaded = DSR.load_from_checkpoint(third)  # testing never reads init_from
    assert loaded.upsampler_trained
    outputs = []

    class Keep(L.Callback):
        def on_test_batch_end(self, trainer, pl_module, out, batch, batch_idx, dataloader_idx=0):
            outputs.append(out)

    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # no "stage 3 was not trained" warning now
        warnings.filterwarnings(
            "ignore", message=".*(num_workers|does not have many workers|only one class).*"
        )
        trainer(tmp_path / "t", callbacks=[Keep()]).test(loaded, datamodule=mvtec(tree), verbose=False)
    loaded.eval()
    with torch.no_grad():
        image = outputs[0]["image"]
        full = loaded.model(mvtec(tree).dataset("test")[0]["image"][None])
    assert image.shape[-1] == 56  # central 0.875 of 64
    assert torch.allclose(outputs[0]["anomaly_map"][0], full.anomaly_map[0, :, 4:60, 4:60], atol=1e-3)
    assert outputs[0]["pred_score"][0] == pytest.approx(
        float(loaded.detection_score(full.detection_map)), abs=1e-3
    )


def test_stage3_needs_a_stage2_checkpoint(tmp_path, tree):
    stage1 = DSRStage1(**TINY)
    path = tmp_path / "s1.ckpt"
    trainer(tmp_path, max_steps=1).fit(stage1, datamodule=mvtec(tree))
    stage1.trainer.save_checkpoint(path)
    with pytest.raises(ConfigError, match="stage-2 DSR checkpoint"):
        trainer(tmp_path, max_steps=1).fit(
            DSR(stage=3, init_from=str(path), **TINY, **TINY_HEADS), datamodule=mvtec(tree)
        )
    wide = DSR(stage=2, init_from=str(path), **{**TINY, "num_embeddings": 64}, **TINY_HEADS)
    with pytest.raises(WeightsError, match="num_embeddings=64"):
        trainer(tmp_path, max_steps=1).fit(wide, datamodule=mvtec(tree))


# ---------------------------------------------------------------------------------------------- published file
def official_names(state: dict) -> dict:
    """Our VQVAE state dict under the official DiscreteLatentModel names, in BGR order (test helper)."""
    renames = [("hi_encoder.down1.", "_encoder_b._conv_1."), ("hi_encoder.down2.", "_encoder_b._conv_2."),
               ("hi_encoder.conv.", "_encoder_b._conv_3."), ("lo_encoder.down.", "_encoder_t._conv_1."),
               ("lo_encoder.conv.", "_encoder_t._conv_2."), ("general_decoder.conv.", "_decoder_b._conv_1."),
               ("general_decoder.up1.", "_decoder_b._conv_trans_1."), ("general_decoder.up2.", "_decoder_b._conv_trans_2."),
               ("hi_encoder.residual.", "_encoder_b._residual_stack."), ("lo_encoder.residual.", "_encoder_t._residual_stack."),
               ("general_decoder.residual.", "_decoder_b._residual_stack."), ("project_lo.", "_pre_vq_conv_top."),
               ("project_hi.", "_pre_vq_conv_bot."), ("quantizer_lo.", "_vq_vae_top."), ("quantizer_hi.", "_vq_vae_bot."),
               ("upsample_lo.", "upsample_t."), (".codebook", "._embedding.weight"), (".ema_weight", "._ema_w"),
               (".cluster_size", "._ema_cluster_size")]  # fmt: skip
    out = {}
    for key, value in state.items():
        for ours, theirs in renames:
            key = key.replace(ours, theirs)
        for i in range(4):
            key = key.replace(f"blocks.{i}.conv3.", f"_layers.{i}._block.1.").replace(
                f"blocks.{i}.conv1.", f"_layers.{i}._block.3."
            )
        out[key] = value
    out["_encoder_b._conv_1.weight"] = out["_encoder_b._conv_1.weight"].flip(1)
    out["_decoder_b._conv_trans_2.weight"] = out["_decoder_b._conv_trans_2.weight"].flip(1)
    out["_decoder_b._conv_trans_2.bias"] = out["_decoder_b._conv_trans_2.bias"].flip(0)
    return out


def test_published_stage1_file_loads_safely_and_wrong_files_fail_clearly(tmp_path, tree):
    torch.manual_seed(0)
    source = DSRStage1(**TINY).model.eval()
    official = official_names(source.state_dict())
    assert (
        "_vq_vae_bot._ema_w" in official
        and "_encoder_t._residual_stack._layers.0._block.1.weight" in official
    )
    mapped = official_stage1_state(official)
    assert set(mapped) == set(source.state_dict())
    assert all(torch.equal(mapped[k], v) for k, v in source.state_dict().items())
    published = tmp_path / "vq_model_pretrained_128_4096.pckl"
    torch.save(official, published)
    model = DSR(stage=2, init_from=str(published), **TINY, **TINY_HEADS)
    model.setup("fit")
    image = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(model.model.vq(image)[0], source(image)[0])

    class Evil:
        def __reduce__(self):
            return (print, ("executed",))

    evil = tmp_path / "evil.pckl"
    evil.write_bytes(pickle.dumps({"x": Evil()}))
    with pytest.raises(WeightsError, match=r"weights_only=True"):
        DSR(stage=2, init_from=str(evil), **TINY, **TINY_HEADS).setup("fit")
    other = tmp_path / "other.pth"
    torch.save({"conv.weight": torch.zeros(1)}, other)
    with pytest.raises(WeightsError, match="no DSR stage-1 weights"):
        stage1_state(torch.load(other, weights_only=True), other)
    with pytest.raises(WeightsError, match="not found"):
        DSR(stage=2, init_from=str(tmp_path / "missing.ckpt"), **TINY, **TINY_HEADS).setup("fit")
