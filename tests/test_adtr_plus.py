"""ADTR+ losses, chaining from ADTR checkpoints, labelled anomaly folders, the CIFAR-10 one-class protocol."""

from __future__ import annotations

import math
import pickle
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from PIL import Image

from adbench.data import MVTecAD
from adbench.data.batch import Batch
from adbench.data.cifar import CIFAR10_CLASSES, CIFAR10OneClass
from adbench.data.labelled_anomalies import MVTecADWithAnomalies, labelled_anomaly_samples
from adbench.errors import ConfigError, DataError
from adbench.models import ADTR
from adbench.models.adtr_plus import ADTRPlus
from adbench.models.adtr_plus.loss import (
    image_level_loss,
    image_score_top_k,
    pixel_level_loss,
    pseudo_huber_map,
)
from tests.conftest import make_mvtec_tree

SMALL = dict(backbone="tf_efficientnet_lite0", pretrained=False, feature_size=4, hidden_dim=32,
             num_encoder_layers=1, num_decoder_layers=1, heads=4, mlp_dim=64)  # fmt: skip


# ------------------------------------------------------------------------------------------ fake CIFAR tree
def make_fake_cifar(
    root: Path, train_per_class: int = 6, test_per_class: int = 4, cifar100_train: int = 40, seed: int = 0
) -> Path:
    """Writes a tiny CIFAR-10 / CIFAR-100 tree in torchvision's pickle layout (md5s differ from the real).

    ``root/cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}`` and
    ``root/cifar-100-python/{train, test, meta}``: dicts with ``data`` (N, 3072) uint8 rows (channel-major
    32x32) and ``labels`` / ``fine_labels``. Every image's red channel encodes its class (for checks).

    Returns:
        ``root`` (use with ``verify_checksums=False``).
    """
    rng = np.random.default_rng(seed)

    def rows(classes: np.ndarray) -> np.ndarray:
        data = rng.integers(0, 256, size=(len(classes), 3, 32, 32), dtype=np.uint8)
        data[:, 0] = (classes * 20).astype(np.uint8)[:, None, None]
        return data.reshape(len(classes), 3072)

    def dump(obj: dict, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as handle:
            pickle.dump(obj, handle)

    c10 = root / "cifar-10-batches-py"
    train_classes = np.repeat(np.arange(10), train_per_class)
    rng.shuffle(train_classes)
    for i, part in enumerate(np.array_split(train_classes, 5), start=1):
        dump({"batch_label": f"training batch {i} of 5", "labels": part.tolist(), "data": rows(part)},
             c10 / f"data_batch_{i}")  # fmt: skip
    test_classes = np.repeat(np.arange(10), test_per_class)
    rng.shuffle(test_classes)
    dump({"batch_label": "testing batch 1 of 1", "labels": test_classes.tolist(), "data": rows(test_classes)},
         c10 / "test_batch")  # fmt: skip
    dump(
        {"label_names": list(CIFAR10_CLASSES), "num_cases_per_batch": len(train_classes) // 5},
        c10 / "batches.meta",
    )

    c100 = root / "cifar-100-python"
    fine = rng.integers(0, 100, size=cifar100_train)
    train100 = {
        "fine_labels": fine.tolist(),
        "coarse_labels": (fine // 5).tolist(),
        "data": rows(np.full(len(fine), 11)),
    }
    dump(train100, c100 / "train")
    dump({"fine_labels": [0, 1], "coarse_labels": [0, 0], "data": rows(np.full(2, 11))}, c100 / "test")
    names100 = {
        "fine_label_names": [f"class{i}" for i in range(100)],
        "coarse_label_names": [f"super{i}" for i in range(20)],
    }
    dump(names100, c100 / "meta")
    return root


@pytest.fixture(scope="module")
def fake_cifar(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_fake_cifar(tmp_path_factory.mktemp("cifar"))


# --------------------------------------------------------------------------------------------------- losses
def test_pseudo_huber_map_and_pixel_loss_against_hand_computed_values():
    # One channel pair, 1x2 grid: |d| averaged over C=2 channels -> [1.0, 3.0].
    features = torch.tensor([[[[1.0, 2.0]], [[-1.0, -4.0]]]])
    reconstruction = torch.zeros_like(features)
    phi = pseudo_huber_map(features, reconstruction)
    expected_phi = torch.tensor([[[math.sqrt(2) - 1, math.sqrt(10) - 1]]])
    assert torch.allclose(phi, expected_phi)
    # y = [0, 1]: pull = (sqrt2 - 1) / 2, push = -alpha log(1 - exp(-(sqrt10 - 1) / 2)).
    labels = torch.tensor([[[0.0, 1.0]]])
    pull = (math.sqrt(2) - 1) / 2
    push = -math.log(1 - math.exp(-(math.sqrt(10) - 1) / 2))
    loss = pixel_level_loss(phi, labels, alpha=0.003)
    assert loss.shape == (1,)
    assert loss.item() == pytest.approx(pull + 0.003 * push, rel=1e-6)
    # A normal image (all y = 0) keeps the pull term only (the push term would be -alpha log 0).
    normal = pixel_level_loss(phi, torch.zeros_like(labels), alpha=0.003)
    assert normal.item() == pytest.approx((math.sqrt(2) + math.sqrt(10) - 2) / 2, rel=1e-6)


def test_image_level_loss_against_hand_computed_values():
    phi = torch.tensor([[[0.1, 0.5], [0.3, 0.9]], [[0.2, 0.4], [0.6, 0.0]]])
    q = image_score_top_k(phi, k=2)
    assert torch.allclose(q, torch.tensor([0.7, 0.5]))
    loss = image_level_loss(phi, torch.tensor([0, 1]), alpha=0.003, k=2)
    assert loss[0].item() == pytest.approx(0.7, rel=1e-6)  # normal: q
    assert loss[1].item() == pytest.approx(-0.003 * math.log(1 - math.exp(-0.5)), rel=1e-6)  # anomalous: push
    assert image_score_top_k(phi, k=100).tolist() == pytest.approx([0.45, 0.3])  # k capped at H*W


def test_batch_loss_mixes_pixel_and_image_labels():
    torch.manual_seed(0)
    model = ADTRPlus(**SMALL, anomaly_source="data", alpha=0.5, top_k=3)
    model.eval()
    image = torch.randn(3, 3, 32, 32)
    mask = torch.zeros(3, 1, 32, 32)
    mask[1, :, :16, :16] = 1  # pixel-labelled anomaly: top-left feature cells
    label = torch.tensor([0, 1, 1])  # image 2: anomalous with an image label only
    with torch.no_grad():
        out = model.model(image)
        phi = pseudo_huber_map(out.features, out.reconstruction)
        y = torch.zeros_like(phi)
        y[1, :2, :2] = 1
        expected = torch.stack([
            pixel_level_loss(phi[:1], y[:1], 0.5)[0],
            pixel_level_loss(phi[1:2], y[1:2], 0.5)[0],
            image_level_loss(phi[2:], label[2:], 0.5, 3)[0],
        ]).mean()  # fmt: skip
        assert model.losses(image, label, mask)["loss"].item() == pytest.approx(expected.item(), rel=1e-5)
        image_mode = ADTRPlus(**SMALL, supervision="image", alpha=0.5, top_k=3)
        image_mode.model.load_state_dict(model.model.state_dict())
        image_mode.eval()
        expected_image = image_level_loss(phi, label, 0.5, 3).mean()
        assert image_mode.losses(image, label, mask)["loss"].item() == pytest.approx(
            expected_image.item(), rel=1e-5
        )


def test_confetti_alters_half_of_the_normal_images_and_a_step_lowers_the_loss():
    torch.manual_seed(0)
    model = ADTRPlus(**SMALL, lr=1e-3)
    batch = Batch(torch.randn(6, 3, 32, 32), torch.zeros(6, dtype=torch.long), torch.zeros(6, 1, 32, 32),
                  list("abcdef"), torch.arange(6))  # fmt: skip
    image, label, mask, altered = model.add_confetti(batch)
    assert altered.tolist() == [True, True, True, False, False, False]
    assert label.tolist() == [1, 1, 1, 0, 0, 0]
    assert all(mask[i].sum() > 0 for i in range(3)) and mask[3:].sum() == 0
    assert torch.equal(image[3:], batch.image[3:]) and not torch.equal(image[:3], batch.image[:3])
    frozen = {k: v.clone() for k, v in model.model.backbone.state_dict().items()}
    optimizer = model.configure_optimizers()["optimizer"]
    model.train()
    first = model.losses(image, label, mask)["loss"]
    for _ in range(5):
        optimizer.zero_grad()
        loss = model.losses(image, label, mask)["loss"]
        assert torch.isfinite(loss)
        loss.backward()
        optimizer.step()
    assert model.losses(image, label, mask)["loss"] < first
    assert all(torch.equal(v, model.model.backbone.state_dict()[k]) for k, v in frozen.items())


def test_feature_cache_gives_the_same_loss():
    torch.manual_seed(0)
    plain = ADTRPlus(**SMALL, dropout=0.0)
    cached = ADTRPlus(**SMALL, dropout=0.0, cache_features=True)
    cached.load_state_dict(plain.state_dict())
    batch = Batch(torch.randn(4, 3, 32, 32), torch.zeros(4, dtype=torch.long), torch.zeros(4, 1, 32, 32),
                  list("abcd"), torch.arange(4))  # fmt: skip
    plain.train(), cached.train()
    for _ in range(2):  # the second pass reads the two unaltered images from the cache
        assert cached.compute_loss(batch)["loss"].item() == pytest.approx(
            plain.compute_loss(batch)["loss"].item()
        )
    assert len(cached.feature_cache) == 2


def test_paper_schedule_defaults():
    model = ADTRPlus(**SMALL)
    config = model.configure_optimizers()
    scheduler = config["lr_scheduler"]["scheduler"]
    assert config["optimizer"].defaults["lr"] == pytest.approx(1e-4)
    assert config["optimizer"].defaults["weight_decay"] == pytest.approx(1e-4)
    lrs = []
    for _ in range(300):
        lrs.append(config["optimizer"].param_groups[0]["lr"])
        config["optimizer"].step()
        scheduler.step()
    assert (
        lrs[199] == pytest.approx(1e-4)
        and lrs[200] == pytest.approx(1e-5)
        and lrs[299] == pytest.approx(1e-5)
    )
    assert model.hparams.alpha == 0.003


# ----------------------------------------------------------------------------------------------- chaining
@pytest.fixture(scope="module")
def adtr_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """last.ckpt of a tiny normal-only ADTR fit."""
    tmp = tmp_path_factory.mktemp("adtr_fit")
    root = make_mvtec_tree(tmp / "data", category="bottle", size=32, n_train=4)
    dm = MVTecAD(root=root, category="bottle", image_size=32, batch_size=4, num_workers=0, val_split=0)
    checkpoint = ModelCheckpoint(dirpath=tmp / "ckpt", save_last=True, save_on_train_epoch_end=True)
    trainer = L.Trainer(max_epochs=1, logger=False, enable_progress_bar=False, enable_model_summary=False,
                        default_root_dir=tmp, callbacks=[checkpoint], limit_val_batches=0)  # fmt: skip
    trainer.fit(ADTR(**SMALL), datamodule=dm)
    return tmp / "ckpt" / "last.ckpt"


def test_init_from_loads_the_adtr_weights_exactly(adtr_checkpoint):
    saved = torch.load(adtr_checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    model = ADTRPlus(**SMALL, init_from=str(adtr_checkpoint))
    state = model.state_dict()
    assert set(state) == set(saved)
    assert all(torch.equal(state[k], v) for k, v in saved.items())
    assert "init_from" not in model.hparams  # a machine-local path: kept in the checkpoint's adbench entry


def test_init_from_errors_name_the_file(tmp_path, adtr_checkpoint):
    missing = tmp_path / "nope" / "last.ckpt"
    with pytest.raises(ConfigError, match=str(missing)):
        ADTRPlus(**SMALL, init_from=str(missing))
    foreign = tmp_path / "foreign.ckpt"
    torch.save(
        {"state_dict": {"model.head.weight": torch.zeros(2)}, "adbench": {"model_name": "dsr"}}, foreign
    )
    with pytest.raises(ConfigError, match=r"foreign\.ckpt.*not of ADTR"):
        ADTRPlus(**SMALL, init_from=str(foreign))
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match=r"garbage\.ckpt"):
        ADTRPlus(**SMALL, init_from=str(garbage))
    with pytest.raises(ConfigError, match="feature_size: checkpoint 4, this model 8"):
        ADTRPlus(**{**SMALL, "feature_size": 8}, init_from=str(adtr_checkpoint))


def test_fit_from_checkpoint_and_warning_without_one(tmp_path, adtr_checkpoint):
    root = make_mvtec_tree(tmp_path / "data", category="bottle", size=32, n_train=4)
    dm = MVTecAD(root=root, category="bottle", image_size=32, batch_size=4, num_workers=0, val_split=0.25)
    trainer_args = dict(max_epochs=1, limit_train_batches=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
                        callbacks=[])  # fmt: skip
    L.Trainer(**trainer_args).fit(ADTRPlus(**SMALL, init_from=str(adtr_checkpoint)), datamodule=dm)
    with pytest.warns(UserWarning, match="starts from scratch"):
        L.Trainer(**trainer_args).fit(ADTRPlus(**SMALL), datamodule=dm)
    with pytest.raises(ConfigError, match="holds no anomalies"):
        L.Trainer(**trainer_args).fit(ADTRPlus(**SMALL, anomaly_source="data"), datamodule=dm)


# ------------------------------------------------------------------------------------- labelled anomalies
def _write(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def test_labelled_anomaly_folder_joins_the_training_split(tmp_path):
    root = make_mvtec_tree(tmp_path / "data", category="bottle", size=32, n_train=4)
    anomalies, masks = tmp_path / "defects", tmp_path / "defect_masks"
    _write(anomalies / "crack" / "a.png", np.full((32, 32, 3), 200, np.uint8))
    _write(anomalies / "crack" / "b.png", np.full((32, 32, 3), 100, np.uint8))  # no mask: image label only
    _write(anomalies / "c.png", np.full((32, 32, 3), 50, np.uint8))
    mask = np.zeros((32, 32), np.uint8)
    mask[4:12, 4:12] = 255
    _write(masks / "crack" / "a_mask.png", mask)
    samples = labelled_anomaly_samples(anomalies, masks)
    assert [(s.image_path.name, s.defect, s.mask_path is not None) for s in samples] == [
        ("c.png", "anomaly", False), ("a.png", "crack", True), ("b.png", "crack", False)
    ]  # fmt: skip
    dm = MVTecADWithAnomalies(root=root, category="bottle", image_size=32, batch_size=4, num_workers=0,
                              val_split=0.25, anomaly_dir=anomalies, anomaly_mask_dir=masks)  # fmt: skip
    train, val = dm.dataset("train"), dm.dataset("val")
    assert sum(s.label for s in train.samples) == 3 and all(s.label == 0 for s in val.samples)
    items = {Path(item["path"]).name: item for item in (train[i] for i in range(len(train)))}
    assert items["a.png"]["label"] == 1 and items["a.png"]["mask"].sum() == 64
    assert items["b.png"]["label"] == 1 and items["b.png"]["mask"].sum() == 0
    leaking = MVTecADWithAnomalies(root=root, category="bottle", image_size=32, num_workers=0,
                                   anomaly_dir=root / "bottle" / "test" / "scratch")  # fmt: skip
    with pytest.raises(DataError, match="must not come from the test split"):
        leaking.setup()
    with pytest.raises(DataError, match="does not exist"):
        labelled_anomaly_samples(tmp_path / "missing")


# ---------------------------------------------------------------------------------------------------- CIFAR
def _classes(dataset) -> np.ndarray:
    """Class ids encoded in the fake images' red channel (value = 20 * class)."""
    return np.asarray([int(image[0, 0, 0]) // 20 for image in dataset.images])


def test_cifar_one_class_split_sizes_balance_and_seeding(fake_cifar):
    dm = CIFAR10OneClass(
        root=fake_cifar, normal_class="cat", verify_checksums=False, val_split=0.0, num_workers=0
    )
    dm.setup()
    train, test = dm.dataset("train"), dm.dataset("test")
    assert dm.category == "cat" and dm.normal_class == 3 and not dm.has_pixel_labels
    assert len(train) == 6 and set(_classes(train)) == {3} and train.labels.sum() == 0
    assert len(test) == 8 and test.labels.sum() == 4  # 4 normal test images + as many anomalies
    assert set(_classes(test)[test.labels == 0]) == {3} and 3 not in set(_classes(test)[test.labels == 1])
    assert all(name.startswith("cifar10/test/") for name in test.names) and len(set(test.names)) == 8
    item = test[0]
    assert (
        item["image"].shape == (3, 32, 32) and item["mask"].shape == (1, 32, 32) and item["mask"].sum() == 0
    )

    def anomalies(seed: int) -> list[str]:
        other = CIFAR10OneClass(root=fake_cifar, category=3, verify_checksums=False, seed=seed, num_workers=0)
        other.setup()
        return [
            n for n, y in zip(other.dataset("test").names, other.dataset("test").labels, strict=True) if y
        ]

    assert anomalies(0) == [n for n, y in zip(test.names, test.labels, strict=True) if y]  # seeded
    assert any(anomalies(s) != anomalies(0) for s in (1, 2, 3))


def test_cifar_auxiliary_anomalies_and_validation_split(fake_cifar):
    dm = CIFAR10OneClass(root=fake_cifar, category="dog", auxiliary_anomalies=True, verify_checksums=False,
                         val_split=0.5, image_size=64, num_workers=0)  # fmt: skip
    train, val = dm.dataset("train"), dm.dataset("val")
    assert len(val) == 3 and val.labels.sum() == 0 and set(_classes(val)) == {5}
    # 3 normal training images + as many CIFAR-100 images as the class has training images (6).
    assert len(train) == 9 and train.labels.sum() == 6
    assert sum(n.startswith("cifar100/train/") for n in train.names) == 6
    assert set(_classes(train)[train.labels == 1]) == {11}
    assert not set(train.names[:3]) & set(val.names)
    assert train[0]["image"].shape == (3, 64, 64)


def test_cifar_errors_are_clear(tmp_path, fake_cifar):
    with pytest.raises(DataError, match=r"cifar-10-batches-py.*download=true"):
        CIFAR10OneClass(root=tmp_path / "empty", num_workers=0).setup()
    with pytest.raises(DataError, match="md5"):  # the fake tree is not the official one
        CIFAR10OneClass(root=fake_cifar, num_workers=0).setup()
    with pytest.raises(DataError, match="unknown CIFAR-10 class"):
        CIFAR10OneClass(root=fake_cifar, normal_class="unicorn")
    with pytest.raises(ConfigError, match="different classes"):
        CIFAR10OneClass(root=fake_cifar, normal_class="cat", category="dog")
    with pytest.raises(DataError, match=r"cifar-100-python"):
        import shutil

        copy = tmp_path / "no100"
        shutil.copytree(fake_cifar / "cifar-10-batches-py", copy / "cifar-10-batches-py")
        CIFAR10OneClass(root=copy, auxiliary_anomalies=True, verify_checksums=False, num_workers=0).setup()
