"""experiments/ for InTra, FractalAD and DSR: each tiny grid runs end to end through experiments/run.py."""

from __future__ import annotations

import importlib.util
import math
import warnings
from pathlib import Path

import pandas as pd
import pytest
import torch

from adbench.benchmark.grid import load_grid
from adbench.cli import main as cli_main
from adbench.data.image_folder import ImageFolder
from tests.conftest import make_mvtec_tree

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENTS = ROOT / "experiments"
METRICS = ["image_AUROC", "pixel_AUROC", "pixel_AUPRO", "image_F1max", "pixel_AP"]
LABELS = {
    "intra_position_embedding": {"local-L7", "global-L7", "paper-L5", "paper-L9"},
    "fractalad_kd": {"kd", "no-kd", "random-teacher"},
    "dsr_stages": {"general-s2", "general-s3", "own-s3"},
}


def _runner():
    spec = importlib.util.spec_from_file_location("experiments_run", EXPERIMENTS / "run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run_tiny(name: str, out: Path, demo_root: Path, monkeypatch: pytest.MonkeyPatch) -> pd.DataFrame:
    """Runs ``experiments/<name>/tiny.yaml`` through run.py's ``main``; returns runs.csv after checking it."""
    monkeypatch.chdir(ROOT)  # grids name their configs relative to the repository root
    code = _runner().main(
        [name, "--scale", "tiny", "--output-dir", str(out), "--", f"--data.init_args.root={demo_root}"]
    )
    runs = pd.read_csv(out / "tiny" / "runs.csv")
    assert code == 0, runs[["variant", "category", "error"]].to_string()
    assert (runs["status"] == "ok").all()
    assert len(runs) == len(load_grid(EXPERIMENTS / name / "tiny.yaml").cells)
    assert set(runs["variant"]) == LABELS[name]
    for metric in METRICS:
        values = runs[metric].astype(float)
        assert values.between(0.0, 1.0).all(), (metric, values.tolist())
    summary = (out / "tiny" / "summary.md").read_text()
    assert all(label in summary for label in LABELS[name])
    assert (out / "tiny" / "bars_image_AUROC.png").stat().st_size > 0
    return runs


def _hparams(run_dir: str) -> dict:
    """Hyperparameters of the model a cell tested (its last checkpoint; the cells run without a logger)."""
    checkpoint = torch.load(
        Path(run_dir) / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True
    )
    return checkpoint["hyper_parameters"]


@pytest.mark.parametrize("name", sorted(LABELS))
def test_grids_of_every_scale_load_with_the_same_variants(name, monkeypatch):
    monkeypatch.chdir(ROOT)
    for scale in ("tiny", "demo", "paper"):
        grid = load_grid(EXPERIMENTS / name / f"{scale}.yaml")
        assert {cell.label for cell in grid.cells} == LABELS[name], scale
        assert grid.output_dir == Path(f"experiments/{name}/results")
        assert grid.name == scale
    demo = load_grid(EXPERIMENTS / name / "demo.yaml")
    assert 2 <= len({cell.category for cell in demo.cells}) <= 4
    assert "Results (demo scale)" in (EXPERIMENTS / name / "README.md").read_text()


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
        hparams = _hparams(row.run_dir)
        seen[(row.variant, row.category)] = (hparams["position_embedding"], hparams["window_size"])
    assert seen == expected


def test_fractalad_kd_tiny(tmp_path, demo_root, monkeypatch):
    runs = _run_tiny("fractalad_kd", tmp_path, demo_root, monkeypatch)
    assert set(zip(runs["variant"], runs["category"], strict=True)) == {
        (v, c) for v in ("kd", "no-kd", "random-teacher") for c in ("brick", "coin")
    }
    for row in runs.itertuples():
        hparams = _hparams(row.run_dir)
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
