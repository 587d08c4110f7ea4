from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from adbench.data import KSDD2, Batch, Folder, MVTec3D, MVTecAD
from adbench.errors import DataError
from tests.conftest import make_mvtec3d_tree, make_mvtec_tree


def test_mvtec_layout_labels_masks_and_shapes(tmp_path):
    root = make_mvtec_tree(tmp_path, category="bottle", size=40)
    dm = MVTecAD(root=root, category="bottle", image_size=32, batch_size=4, num_workers=0, val_split=0.25)
    dm.setup()
    assert len(dm.dataset("train")) == 6 and len(dm.dataset("val")) == 2
    test = dm.dataset("test")
    assert len(test) == 3 + 2 * 3
    labels = [s.label for s in test.samples]
    assert labels.count(0) == 3 and labels.count(1) == 6
    assert all(s.mask_path is not None for s in test.samples if s.label == 1)
    batch = next(iter(dm.test_dataloader()))
    assert isinstance(batch, Batch)
    assert batch.image.shape == (4, 3, 32, 32) and batch.mask.shape == (4, 1, 32, 32)
    assert set(torch.unique(batch.mask).tolist()) <= {0.0, 1.0}
    # anomalous samples carry non-empty masks, normal ones empty masks
    for i in range(len(test)):
        item = test[i]
        assert (item["mask"].sum() > 0) == (item["label"] == 1)


def test_validation_split_is_seeded_and_disjoint_from_train(tmp_path):
    root = make_mvtec_tree(tmp_path, category="bottle", n_train=20)

    def split(seed: int) -> tuple[set, set]:
        dm = MVTecAD(root=root, category="bottle", image_size=16, num_workers=0, val_split=0.2, seed=seed)
        dm.setup()
        return {s.image_path for s in dm.dataset("train").samples}, {
            s.image_path for s in dm.dataset("val").samples
        }

    train, val = split(0)
    assert len(val) == 4 and not train & val and len(train | val) == 20
    assert split(0) == (train, val)
    assert split(1)[1] != val


def test_center_crop_and_normalization(tmp_path):
    root = make_mvtec_tree(tmp_path, category="bottle", size=40)
    dm = MVTecAD(
        root=root,
        category="bottle",
        image_size=40,
        center_crop=24,
        mean=(0.5,) * 3,
        std=(0.5,) * 3,
        num_workers=0,
    )
    item = dm.dataset("test")[0]
    assert item["image"].shape == (3, 24, 24)
    assert item["image"].min() >= -1.0 and item["image"].max() <= 1.0


def test_folder_accepts_any_category_and_image_level_labels(tmp_path):
    root = make_mvtec_tree(tmp_path, category="my_part")
    # drop masks of one defect: image-level labels only for it
    for mask in (root / "my_part" / "ground_truth" / "hole").iterdir():
        mask.unlink()
    (root / "my_part" / "ground_truth" / "hole").rmdir()
    dm = Folder(root=root, category="my_part", name="plant7", image_size=16, num_workers=0)
    with pytest.warns(UserWarning, match="no mask"):
        dm.setup()
    assert dm.describe() == {"dataset": "plant7", "category": "my_part"}
    assert not dm.has_pixel_labels


def test_mvtec3d_rgb_layout(tmp_path):
    make_mvtec3d_tree(
        tmp_path, category="bagel", n_train=4, n_test_good=2, defects=("crack",), n_per_defect=2
    )
    dm = MVTec3D(root=tmp_path, category="bagel", image_size=16, num_workers=0, val_split=0)
    dm.setup()
    assert len(dm.dataset("train")) == 4
    test = dm.dataset("test")
    assert [s.label for s in test.samples] == [1, 1, 0, 0]
    assert test[0]["mask"].sum() > 0 and dm.has_pixel_labels


def test_ksdd2_labels_from_masks(tmp_path):
    rng = np.random.default_rng(0)
    for split, flags in [("train", [0, 0, 0, 1]), ("test", [0, 1, 1])]:
        (tmp_path / split).mkdir()
        for i, flag in enumerate(flags):
            Image.fromarray(rng.integers(0, 255, (30, 12, 3), dtype=np.uint8)).save(
                tmp_path / split / f"{i}.png"
            )
            mask = np.zeros((30, 12), np.uint8)
            if flag:
                mask[3:6, 3:6] = 255
            Image.fromarray(mask).save(tmp_path / split / f"{i}_GT.png")
    dm = KSDD2(root=tmp_path, image_size=(32, 16), num_workers=0, val_split=0)
    dm.setup()
    assert len(dm.dataset("train")) == 3
    assert sorted(s.label for s in dm.dataset("test").samples) == [0, 1, 1]
    supervised = KSDD2(root=tmp_path, image_size=16, num_workers=0, val_split=0, use_anomalous_train=True)
    supervised.setup()
    assert len(supervised.dataset("train")) == 4


# ----------------------------------------------------------------------------------------------------- bad input
def test_missing_root_names_path_and_download_command(tmp_path):
    dm = MVTecAD(root=tmp_path / "nowhere", category="bottle", num_workers=0)
    with pytest.raises(DataError, match=r"nowhere.*adbench data download mvtec"):
        dm.setup()


def test_unknown_category_lists_valid_ones(tmp_path):
    with pytest.raises(DataError, match=r"unknown mvtec category 'bottel'.*bottle, cable"):
        MVTecAD(root=tmp_path, category="bottel")


def test_corrupt_image_names_file(tmp_path):
    root = make_mvtec_tree(tmp_path, category="bottle")
    bad = root / "bottle" / "test" / "good" / "000.png"
    bad.write_bytes(bad.read_bytes()[:40])
    dm = MVTecAD(root=root, category="bottle", image_size=16, num_workers=0)
    dm.setup()
    index = [str(s.image_path) for s in dm.dataset("test").samples].index(str(bad))
    with pytest.raises(DataError, match=r"000\.png"):
        dm.dataset("test")[index]


def test_mask_size_mismatch_is_reported_at_setup(tmp_path):
    root = make_mvtec_tree(tmp_path, category="bottle", size=40)
    mask = root / "bottle" / "ground_truth" / "hole" / "001_mask.png"
    Image.fromarray(np.zeros((20, 20), np.uint8)).save(mask)
    dm = MVTecAD(root=root, category="bottle", num_workers=0)
    with pytest.raises(DataError, match=r"001_mask\.png.*must match"):
        dm.setup()


def test_empty_training_split(tmp_path):
    root = make_mvtec_tree(tmp_path, category="bottle")
    for image in (root / "bottle" / "train" / "good").iterdir():
        image.unlink()
    with pytest.raises(DataError, match="no normal training images"):
        MVTecAD(root=root, category="bottle", num_workers=0).setup("fit")


@pytest.mark.parametrize("mode", ["L", "RGBA", "I;16"])
def test_grayscale_rgba_and_16bit_images_are_converted(tmp_path, mode):
    root = make_mvtec_tree(tmp_path, category="bottle", size=24)
    path = root / "bottle" / "train" / "good" / "000.png"
    if mode == "I;16":
        Image.fromarray((np.arange(24 * 24).reshape(24, 24) * 100).astype(np.uint16)).save(path)
    else:
        Image.open(path).convert(mode).save(path)
    dm = MVTecAD(root=root, category="bottle", image_size=16, num_workers=0, val_split=0)
    dm.setup()
    index = [str(s.image_path) for s in dm.dataset("train").samples].index(str(path))
    item = dm.dataset("train")[index]
    assert item["image"].shape == (3, 16, 16) and torch.isfinite(item["image"]).all()
    if mode == "I;16":  # the 16-bit range is scaled, not clipped to white
        assert item["image"].std() > 0.1


def test_val_split_out_of_range_is_rejected(tmp_path):
    with pytest.raises(DataError, match="val_split"):
        MVTecAD(root=tmp_path, category="bottle", val_split=1.5)


def test_loader_workers_return_the_contract(tmp_path):
    root = make_mvtec_tree(tmp_path, category="bottle")
    dm = MVTecAD(root=root, category="bottle", image_size=16, batch_size=5, num_workers=1)
    dm.setup()
    indices = torch.cat([b.index for b in dm.test_dataloader()])
    assert sorted(indices.tolist()) == list(range(len(dm.dataset("test"))))
    assert Path(dm.dataset("test").samples[0].image_path).exists()
