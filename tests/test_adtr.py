import lightning as L
import pytest
import torch

from adbench.data import MVTecAD
from adbench.data.batch import Batch
from adbench.metrics import image_auroc
from adbench.models import ADTR
from adbench.models.adtr.loss import feature_reconstruction_loss
from adbench.models.adtr.torch_model import ADTRModel, ADTROutput
from tests.conftest import make_mvtec_tree


def small_adtr(**kwargs) -> ADTR:
    args = dict(
        backbone="tf_efficientnet_lite0",
        pretrained=False,
        feature_size=4,
        hidden_dim=32,
        num_encoder_layers=1,
        num_decoder_layers=1,
        heads=4,
        mlp_dim=64,
    )
    return ADTR(**{**args, **kwargs})


def test_feature_grid_shapes_and_channel_count():
    model = ADTRModel(
        backbone="tf_efficientnet_lite0", pretrained=False, feature_size=8, hidden_dim=32, heads=4
    )
    out = model(torch.randn(2, 3, 64, 64))
    assert out.features.shape == (2, 16 + 24 + 40 + 112 + 320, 8, 8)
    assert out.reconstruction.shape == out.features.shape
    assert out.anomaly_map.shape == (2, 1, 8, 8)


def test_anomaly_map_is_l2_norm_of_feature_difference():
    features = torch.zeros(1, 2, 1, 2)
    reconstruction = torch.tensor([[[[3.0, 0.0]], [[4.0, 1.0]]]])
    out = ADTROutput(features, reconstruction)
    assert torch.allclose(out.anomaly_map, torch.tensor([[[[5.0, 1.0]]]]))
    assert feature_reconstruction_loss(features, reconstruction) == pytest.approx((9 + 16 + 1) / 4)


def test_paper_configuration_has_720_channels():
    model = ADTRModel(backbone="efficientnet_b4", pretrained=False)
    assert model.feature_channels == 720
    assert model.query_embed.shape == (256, 256)
    assert len(model.encoder) == 4 and len(model.decoder) == 4


def test_outputs_at_input_resolution_and_score_is_max_of_pooled_map():
    model = small_adtr(score_pool_size=4)
    batch = Batch(
        torch.randn(3, 3, 48, 40),
        torch.tensor([0, 1, 0]),
        torch.zeros(3, 1, 48, 40),
        ["a", "b", "c"],
        torch.arange(3),
    )
    out = model.predict_batch(batch)
    assert out["anomaly_map"].shape == (3, 1, 48, 40) and out["pred_score"].shape == (3,)
    pooled = torch.nn.functional.avg_pool2d(out["anomaly_map"], 4, stride=1).flatten(1).amax(1)
    assert torch.allclose(out["pred_score"], pooled)


def test_backbone_frozen_and_one_step_reduces_loss():
    torch.manual_seed(0)
    model = small_adtr()
    batch = Batch(
        torch.randn(4, 3, 64, 64),
        torch.zeros(4, dtype=torch.long),
        torch.zeros(4, 1, 64, 64),
        list("abcd"),
        torch.arange(4),
    )
    optimizer = model.configure_optimizers()["optimizer"]
    frozen = {k: v.clone() for k, v in model.model.backbone.state_dict().items()}
    model.train()
    first = model.compute_loss(batch)["loss"]
    for _ in range(5):
        optimizer.zero_grad()
        loss = model.compute_loss(batch)["loss"]
        loss.backward()
        optimizer.step()
    assert model.compute_loss(batch)["loss"] < first
    assert all(torch.equal(v, model.model.backbone.state_dict()[k]) for k, v in frozen.items())


def test_trained_adtr_beats_chance_on_known_defects(tmp_path):
    """Pretrained lite0 features + a short fit separate red-square defects from normal stripes."""
    L.seed_everything(0)
    root = make_mvtec_tree(tmp_path, category="bottle", size=64, n_train=16, n_test_good=6, n_per_defect=4)
    dm = MVTecAD(
        root=root,
        category="bottle",
        image_size=64,
        batch_size=8,
        num_workers=0,
        val_split=0,
        mean=(0.5,) * 3,
        std=(0.5,) * 3,
    )
    model = small_adtr(pretrained=True, lr=1e-3, score_pool_size=4)
    trainer = L.Trainer(
        max_epochs=8,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        default_root_dir=tmp_path,
        callbacks=[],
    )
    trainer.fit(model, datamodule=dm)
    trainer.test(model, datamodule=dm, verbose=False)
    scores, labels = [], []
    model.eval()
    for batch in dm.test_dataloader():
        scores.append(model.predict_batch(batch)["pred_score"].detach())
        labels.append(batch.label)
    assert image_auroc(torch.cat(scores), torch.cat(labels)) > 0.8
    assert (tmp_path / "metrics.json").is_file()


def test_feature_cache_gives_the_same_loss_and_skips_the_backbone():
    from adbench.models.components.feature_cache import FeatureCache

    torch.manual_seed(0)
    model = small_adtr(cache_features=True, dropout=0.0)
    batch = Batch(
        torch.randn(3, 3, 32, 32),
        torch.zeros(3, dtype=torch.long),
        torch.zeros(3, 1, 32, 32),
        ["a", "b", "c"],
        torch.arange(3),
    )
    model.train()
    first = model.compute_loss(batch)["loss"]
    assert len(model.feature_cache) == 3
    calls = []
    original = model.model.extract
    model.model.extract = lambda image: calls.append(len(image)) or original(image)
    again = model.compute_loss(batch)["loss"]
    assert calls == [] and torch.allclose(first, again)
    model.eval()
    assert torch.allclose(model.compute_loss(batch)["loss"], first) and calls == [
        3
    ]  # eval never uses the cache
    cache = FeatureCache()
    mixed = cache.get(["a", "x"], torch.ones(2, 1, 1, 1), lambda image: image * 2)
    assert mixed.shape == (2, 1, 1, 1) and len(cache) == 2


def test_checkpoint_from_before_feature_resize_keeps_its_point_sampled_features():
    model = small_adtr()
    assert model.model.feature_resize == "area"
    old = {"hyper_parameters": {k: v for k, v in model.hparams.items() if k != "feature_resize"}}
    with pytest.warns(UserWarning, match="predates feature_resize"):
        model.on_load_checkpoint(old)
    assert model.model.feature_resize == "bilinear_corners" == model.hparams.feature_resize
    current = small_adtr()
    current.on_load_checkpoint({"hyper_parameters": dict(current.hparams)})
    assert current.model.feature_resize == "area"


def test_adtr_plus_refuses_an_old_point_sampled_checkpoint_for_area_features():
    from adbench.errors import ConfigError
    from adbench.models.adtr_plus.init_from import check_architecture

    wanted = dict(small_adtr().hparams)
    old = {k: v for k, v in wanted.items() if k != "feature_resize"}
    with pytest.raises(ConfigError, match="feature_resize: checkpoint 'bilinear_corners'"):
        check_architecture("old.ckpt", old, wanted)
    check_architecture("new.ckpt", wanted, wanted)
