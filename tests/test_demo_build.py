"""Tests of the embedded demo data builder (adbench.data.demo_build)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from adbench.data.demo_build import DEMO_CATEGORIES, DEMO_DEFECTS, MARKER, VERSION, build_demo, read_marker
from adbench.data.demo_build.build import defect_counts, is_subtle
from adbench.data.demo_build.defects import DEFECTS, apply_defect
from adbench.data.demo_build.sources import CATEGORY_SPECS, IMAGE_SIZE, foreign_texture, normal_sample

SMALL = {"n_train": 2, "n_good": 2, "n_defective": 5}  # one image per defect type (at most 5 types)


def _digest(root: Path, category: str | None = None) -> dict[str, str]:
    """SHA-1 of every PNG under root (or under one category), keyed by relative path."""
    base = root if category is None else root / category
    return {
        str(p.relative_to(root)): hashlib.sha1(p.read_bytes()).hexdigest()
        for p in sorted(base.rglob("*.png"))
    }


@pytest.fixture(scope="module")
def coin_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One category built at full size."""
    return build_demo(tmp_path_factory.mktemp("full") / "demo", seed=0, categories=["coin"])


@pytest.fixture(scope="module")
def small_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every category, a few images each."""
    return build_demo(tmp_path_factory.mktemp("small") / "demo", seed=3, **SMALL)


# ----------------------------------------------------------------------------------------------- layout


def test_categories_are_textures_and_objects() -> None:
    kinds = {CATEGORY_SPECS[c].kind for c in DEMO_CATEGORIES}
    assert len(DEMO_CATEGORIES) >= 4 and kinds == {"texture", "object"}
    for category in DEMO_CATEGORIES:
        assert 3 <= len(DEMO_DEFECTS[category]) <= 5
        assert set(DEMO_DEFECTS[category]) <= set(DEFECTS)
    assert set().union(*DEMO_DEFECTS.values()) == set(DEFECTS)  # every defect kind is used somewhere


def test_full_category_layout_and_counts(coin_root: Path) -> None:
    cat = coin_root / "coin"
    train = sorted((cat / "train" / "good").glob("*.png"))
    assert len(train) >= 80
    assert train[0].name == "000.png"
    test_dirs = sorted(p.name for p in (cat / "test").iterdir())
    assert test_dirs == sorted(["good", *DEMO_DEFECTS["coin"]])
    n_test = sum(len(list((cat / "test" / d).glob("*.png"))) for d in test_dirs)
    assert n_test >= 60
    assert len(list((cat / "test" / "good").glob("*.png"))) >= 20
    assert sorted(p.name for p in (cat / "ground_truth").iterdir()) == sorted(DEMO_DEFECTS["coin"])

    marker = json.loads((coin_root / MARKER).read_text())
    assert marker["seed"] == 0 and marker["version"] == VERSION and marker["categories"] == ["coin"]
    counts = marker["counts"]["coin"]
    assert counts["train/good"] == len(train)
    assert sum(v for k, v in counts.items() if k.startswith("test/")) == n_test

    subtle = 0
    for kind in DEMO_DEFECTS["coin"]:
        images = sorted((cat / "test" / kind).glob("*.png"))
        masks = sorted((cat / "ground_truth" / kind).glob("*.png"))
        assert [m.name for m in masks] == [f"{p.stem}_mask.png" for p in images]
        assert len(images) == counts[f"test/{kind}"] == defect_counts("coin")[kind]
        subtle += sum(is_subtle(i) for i in range(len(images)))
        for image_path, mask_path in zip(images, masks, strict=True):
            with Image.open(image_path) as image, Image.open(mask_path) as mask:
                assert image.mode == "RGB" and image.size == (IMAGE_SIZE, IMAGE_SIZE)
                assert mask.mode == "L" and mask.size == image.size
                m = np.asarray(mask)
            assert set(np.unique(m)) <= {0, 255}
            assert (m > 0).sum() > 0, f"empty mask {mask_path}"
            assert (m > 0).mean() < 0.3
    n_defective = n_test - counts["test/good"]
    assert 0.1 <= subtle / n_defective <= 0.3


def test_all_categories_small(small_root: Path) -> None:
    marker = read_marker(small_root)
    assert marker is not None and marker["categories"] == list(DEMO_CATEGORIES)
    for category in DEMO_CATEGORIES:
        cat = small_root / category
        assert len(list((cat / "train" / "good").glob("*.png"))) == SMALL["n_train"]
        assert len(list((cat / "test" / "good").glob("*.png"))) == SMALL["n_good"]
        assert not (cat / "ground_truth" / "good").exists()  # normal images have no masks
        for kind in DEMO_DEFECTS[category]:
            images = sorted((cat / "test" / kind).glob("*.png"))
            assert images, (category, kind)
            for image_path in images:
                mask = np.asarray(Image.open(cat / "ground_truth" / kind / f"{image_path.stem}_mask.png"))
                image = np.asarray(Image.open(image_path))
                assert image.shape == (IMAGE_SIZE, IMAGE_SIZE, 3) and mask.shape == image.shape[:2]
                assert (mask == 255).any(), (category, kind, image_path.name)


def test_normal_images_vary_but_stay_alike(small_root: Path) -> None:
    for category in DEMO_CATEGORIES:
        a, b = (
            np.asarray(Image.open(p), dtype=np.float32)
            for p in sorted((small_root / category / "train" / "good").glob("*.png"))
        )
        assert np.abs(a - b).mean() > 2.0, category  # not copies of one image
        assert abs(a.mean() - b.mean()) < 30.0, category  # the same material / object


# ----------------------------------------------------------------------------------------------- cache


def test_deterministic_same_seed_and_different_seed(tmp_path: Path, small_root: Path) -> None:
    cats = ["grass", "cup"]
    a = build_demo(tmp_path / "a", seed=3, categories=cats, workers=1, **SMALL)
    b = build_demo(tmp_path / "b", seed=3, categories=["cup", "grass"], workers=2, **SMALL)
    c = build_demo(tmp_path / "c", seed=4, categories=cats, **SMALL)
    assert _digest(a) == _digest(b)
    # A subset of categories gives the same files as the full build.
    for category in cats:
        assert _digest(a, category) == _digest(small_root, category)
    da, dc = _digest(a), _digest(c)
    assert da.keys() == dc.keys()
    assert all(da[k] != dc[k] for k in da if "_mask" not in k)


def test_cache_hit_does_not_rebuild(tmp_path: Path) -> None:
    root = build_demo(tmp_path / "demo", seed=1, categories=["brick"], **SMALL)
    marker_stat = (root / MARKER).stat()
    image = root / "brick" / "train" / "good" / "000.png"
    image_stat = image.stat()

    assert build_demo(root, seed=1, categories=["brick"], **SMALL) == root
    assert (root / MARKER).stat().st_ino == marker_stat.st_ino
    assert image.stat().st_mtime_ns == image_stat.st_mtime_ns

    build_demo(root, seed=1, categories=["brick"], force=True, **SMALL)  # force rebuilds
    assert (root / MARKER).stat().st_ino != marker_stat.st_ino

    before = _digest(root)
    build_demo(root, seed=2, categories=["brick"], **SMALL)  # another seed rebuilds
    assert read_marker(root)["seed"] == 2 and _digest(root) != before

    build_demo(root, seed=2, categories=["gravel"], **SMALL)  # more categories: the earlier ones are kept
    assert read_marker(root)["categories"] == ["brick", "gravel"]

    marker = json.loads((root / MARKER).read_text())
    marker["version"] = VERSION + 1  # another version rebuilds
    (root / MARKER).write_text(json.dumps(marker))
    build_demo(root, seed=2, categories=["gravel"], **SMALL)
    assert read_marker(root)["version"] == VERSION
    leftovers = [
        p.name for p in tmp_path.iterdir() if p.name.startswith(".demo.") and not p.name.endswith(".lock")
    ]
    assert leftovers == []  # no temporary or old folders left behind


def test_refuses_to_overwrite_foreign_folder(tmp_path: Path) -> None:
    root = tmp_path / "mine"
    root.mkdir()
    (root / "precious.txt").write_text("data")
    with pytest.raises(FileExistsError):
        build_demo(root, categories=["brick"], **SMALL)
    assert (root / "precious.txt").exists()
    with pytest.raises(ValueError):
        build_demo(tmp_path / "x", categories=["nope"])
    with pytest.raises(ValueError):
        build_demo(tmp_path / "x", seed=-1)


# ----------------------------------------------------------------------------------------------- defects


@pytest.mark.parametrize("category", ["gravel", "cup"])
@pytest.mark.parametrize("kind", sorted(DEFECTS))
@pytest.mark.parametrize("subtle", [False, True])
def test_defect_changes_inside_mask_only(category: str, kind: str, subtle: bool) -> None:
    if kind == "missing" and CATEGORY_SPECS[category].kind == "texture":
        pytest.skip("missing parts need an object against a background")
    rng = np.random.default_rng(11)
    image, fg = normal_sample(category, rng)
    fg_arg = None if CATEGORY_SPECS[category].kind == "texture" else fg
    other = foreign_texture("grass", rng) if kind == "texture" else None
    original = image.copy()
    out, mask = apply_defect(kind, image, rng, subtle, fg_arg, other)
    np.testing.assert_array_equal(image, original)  # input untouched
    assert out.shape == image.shape and out.dtype == np.float32
    assert mask.shape == image.shape[:2] and mask.dtype == bool
    assert out.min() >= 0.0 and out.max() <= 1.0
    assert mask.sum() >= 12
    diff = np.abs(out - image).mean(axis=-1)
    assert diff[mask].mean() >= (0.02 if subtle else 0.04)
    outside = ~mask
    assert diff[outside].mean() < 0.005
    assert (diff[outside] > 0.1).mean() < 0.01
    if fg_arg is not None and kind not in ("deform", "missing", "misplaced"):  # lies on the object
        assert (mask & fg).sum() >= 0.9 * mask.sum()

    rng2 = np.random.default_rng(11)
    image2, fg2 = normal_sample(category, rng2)
    other2 = foreign_texture("grass", rng2) if kind == "texture" else None
    out2, mask2 = apply_defect(kind, image2, rng2, subtle, None if fg_arg is None else fg2, other2)
    np.testing.assert_array_equal(out, out2)
    np.testing.assert_array_equal(mask, mask2)


def test_unknown_names() -> None:
    with pytest.raises(KeyError):
        apply_defect("dent", np.zeros((8, 8, 3)), np.random.default_rng(0))
    with pytest.raises(KeyError):
        normal_sample("wood", np.random.default_rng(0))


def test_sources_are_packaged_offline() -> None:
    # Every source must come from an installed wheel: building must not need the network.
    for category in DEMO_CATEGORIES:
        image, fg = normal_sample(category, np.random.default_rng(0))
        assert image.shape == (IMAGE_SIZE, IMAGE_SIZE, 3) and image.dtype == np.float32
        assert fg.shape == image.shape[:2] and 0.05 < fg.mean() <= 1.0
