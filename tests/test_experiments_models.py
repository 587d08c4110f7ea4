"""experiments/ for InTra, FractalAD and DSR: each tiny grid runs end to end through experiments/run.py."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import pandas as pd
import pytest

from adbench.benchmark.grid import load_grid
from adbench.cli import main as cli_main
from adbench.data.image_folder import ImageFolder
from tests.conftest import make_mvtec_tree
from tests.experiment_helpers import (
    EXPERIMENTS,
    cell_hparams,
    check_grids,
    run_tiny,
)

METRICS = ["image_AUROC", "pixel_AUROC", "pixel_AUPRO", "image_F1max", "pixel_AP"]
LABELS = {
    "intra_position_embedding": {"local-L7", "global-L7", "paper-L5", "paper-L9"},
    "fractalad_kd": {"kd", "no-kd", "random-teacher"},
    "dsr_stages": {"general-s2", "general-s3", "own-s3"},
}


def _run_tiny(name: str, out: Path, demo_root: Path, monkeypatch: pytest.MonkeyPatch) -> pd.DataFrame:
    """``run_tiny`` on the demo tree at ``demo_root`` with this file's labels and metrics."""
    return run_tiny(name, out, [f"--data.init_args.root={demo_root}"], LABELS[name], METRICS, monkeypatch)


@pytest.mark.parametrize("name", sorted(LABELS))
def test_grids_of_every_scale_load_with_the_same_variants(name, monkeypatch):
    check_grids(name, LABELS[name], monkeypatch)
    demo = load_grid(EXPERIMENTS / name / "demo.yaml")
    assert 2 <= len({cell.category for cell in demo.cells}) <= 4


@pytest.mark.parametrize(
    "config", sorted((EXPERIMENTS / "dsr_stages").glob("stage1_*.yaml")), ids=lambda p: p.stem
)
def test_dsr_stage1_configs_parse(config, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["fit", "--config", str(config), "--print_config"])
    assert exit_info.value.code == 0
    assert "adbench.models.dsr.DSRStage1" in capsys.readouterr().out


def test_image_folder_can_ignore_the_category(tmp_path):
    root = make_mvtec_tree(tmp_path, category="a", n_train=3)
    make_mvtec_tree(tmp_path, category="b", n_train=5)
    common = dict(root=root, pattern="*/train/good/*", image_size=32, batch_size=2, num_workers=0)
    every = ImageFolder(category="a", use_category=False, **common)
    assert len(every.images()) == 8 and every.describe()["category"] == "all"
    own = ImageFolder(category="a", **{**common, "pattern": "train/good/*"})
    assert len(own.images()) == 3 and {p.parent.parent.parent.name for p in own.images()} == {"a"}


def test_intra_position_embedding_tiny(tmp_path, demo_root, monkeypatch):
    runs = _run_tiny("intra_position_embedding", tmp_path, demo_root, monkeypatch)
    expected = {  # (variant, category) -> (position embedding, L) of the tested model
        ("local-L7", "brick"): ("local", 7),
        ("global-L7", "coin"): ("global", 7),
        ("paper-L5", "brick"): ("local", 5),
        ("paper-L9", "coin"): ("global", 9),  # the paper's rule: global for objects (category_args)
    }
    seen = {}
    for row in runs.itertuples():
        hparams = cell_hparams(row.run_dir)
        seen[(row.variant, row.category)] = (hparams["position_embedding"], hparams["window_size"])
    assert seen == expected


def test_fractalad_kd_tiny(tmp_path, demo_root, monkeypatch):
    runs = _run_tiny("fractalad_kd", tmp_path, demo_root, monkeypatch)
    assert set(zip(runs["variant"], runs["category"], strict=True)) == {
        (v, c) for v in ("kd", "no-kd", "random-teacher") for c in ("brick", "coin")
    }
    for row in runs.itertuples():
        hparams = cell_hparams(row.run_dir)
        assert hparams["use_kd"] == (row.variant != "no-kd")
        assert hparams["pretrained"] == (row.variant != "random-teacher")
        assert hparams["weight_decay"] == pytest.approx(1e-3)  # pinned: only distillation differs


def test_dsr_stages_tiny(tmp_path, demo_root, monkeypatch):
    stage1_images: list[tuple[str, int]] = []
    images = ImageFolder.images

    def spy(self: ImageFolder) -> list[Path]:
        found = images(self)
        stage1_images.append((self.category, len(found)))
        return found

    monkeypatch.setattr(ImageFolder, "images", spy)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        runs = _run_tiny("dsr_stages", tmp_path, demo_root, monkeypatch)
    stages = {row.variant: row.stage_train_s.split(";") for row in runs.itertuples()}
    assert {v: len(s) for v, s in stages.items()} == {"general-s2": 2, "general-s3": 3, "own-s3": 3}
    assert all(math.isfinite(float(s)) for row in stages.values() for s in row)
    # the stage-2-only cell is tested with the detection map, and says so; the stage-3 cells are not
    skipped = [w for w in caught if "stage 3 (upsampling module) was not trained" in str(w.message)]
    assert len(skipped) == 1
    # stage 1: every demo category's normals in the general cells, brick's own in own-s3
    n_categories = len([p for p in demo_root.iterdir() if (p / "train" / "good").is_dir()])
    per_category = len(list((demo_root / "brick" / "train" / "good").iterdir()))
    counts = {category: count for category, count in stage1_images}
    assert counts == {"": n_categories * per_category, "brick": per_category}
    assert n_categories > 1


def test_patchcore_options_validation_study_tiny(tmp_path, demo_root):
    """The study scores held-out normals and synthetic anomalies only, one row per category and variant."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "experiments" / "patchcore_options" / "validate.py"
    spec = importlib.util.spec_from_file_location("patchcore_validate", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    table = module.main(
        [
            "--root",
            str(demo_root),
            "--categories",
            "cup",
            "--variants",
            "stages-2-3",
            "plain-max",
            "--image-size",
            "64",
            "--output",
            str(tmp_path),
        ]  # fmt: skip
    )
    assert list(table["variant"]) == ["stages-2-3", "plain-max"]
    assert (table["image_AUROC"] > 0.5).all()  # real ImageNet features see pasted synthetic defects
    assert "| mean |" in (tmp_path / "validation.md").read_text()
