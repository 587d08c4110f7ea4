"""experiments/ for ADTR and ADTR+: each tiny grid runs end to end through experiments/run.py."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pandas as pd
import pytest
import torch

from adbench.benchmark.grid import load_grid
from adbench.cli import main as cli_main
from adbench.data.base import AnomalyDataModule
from tests.test_adtr_plus import make_fake_cifar

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENTS = ROOT / "experiments"
IMAGE_METRICS = ["image_AUROC", "image_F1max"]
PIXEL_METRICS = ["pixel_AUROC", "pixel_AUPRO", "pixel_AP"]
LABELS = {
    "adtr_identity_shortcut": {"adtr", "adtr-no-attention", "adtr-no-query", "cnn"},
    "adtr_plus_anomaly_sources": {"adtr", "adtr-plus-confetti", "adtr-plus-real"},
    "cifar10_one_class": {"adtr", "adtr-plus"},
}


def _runner():
    spec = importlib.util.spec_from_file_location("experiments_run", EXPERIMENTS / "run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run_tiny(name: str, out: Path, overrides: list[str], monkeypatch: pytest.MonkeyPatch) -> pd.DataFrame:
    """Runs ``experiments/<name>/tiny.yaml`` through run.py's ``main``; returns runs.csv after checking it."""
    monkeypatch.chdir(ROOT)  # grids name their configs relative to the repository root
    code = _runner().main([name, "--scale", "tiny", "--output-dir", str(out), "--", *overrides])
    runs = pd.read_csv(out / "tiny" / "runs.csv")
    assert code == 0, runs[["variant", "category", "error"]].to_string()
    assert (runs["status"] == "ok").all()
    assert len(runs) == len(load_grid(EXPERIMENTS / name / "tiny.yaml").cells)
    assert set(runs["variant"]) == LABELS[name]
    pixel = name != "cifar10_one_class"  # CIFAR has image labels only
    for metric in IMAGE_METRICS + (PIXEL_METRICS if pixel else []):
        values = runs[metric].astype(float)
        assert values.between(0.0, 1.0).all(), (metric, values.tolist())
    if not pixel:
        assert runs[PIXEL_METRICS].isna().all().all()
    summary = (out / "tiny" / "summary.md").read_text()
    assert all(label in summary for label in LABELS[name])
    assert (out / "tiny" / "bars_image_AUROC.png").stat().st_size > 0
    return runs


def _hparams(run_dir: str) -> dict:
    """Hyper-parameters of the model a cell tested (its last checkpoint; the cells run without a logger)."""
    path = Path(run_dir) / "checkpoints" / "last.ckpt"
    return torch.load(path, map_location="cpu", weights_only=True)["hyper_parameters"]


@pytest.mark.parametrize("name", sorted(LABELS))
def test_grids_of_every_scale_load_with_the_same_variants(name, monkeypatch):
    monkeypatch.chdir(ROOT)
    for scale in ("tiny", "demo", "paper"):
        grid = load_grid(EXPERIMENTS / name / f"{scale}.yaml")
        assert {cell.label for cell in grid.cells} == LABELS[name], scale
        assert grid.output_dir == Path(f"experiments/{name}/results")
        assert grid.name == scale
    readme = (EXPERIMENTS / name / "README.md").read_text()
    assert "Results (demo scale)" in readme and "--scale paper" in readme


def test_cifar_grids_cover_all_ten_classes(monkeypatch):
    monkeypatch.chdir(ROOT)
    for scale in ("demo", "paper"):
        grid = load_grid(EXPERIMENTS / "cifar10_one_class" / f"{scale}.yaml")
        for label in LABELS["cifar10_one_class"]:
            assert len({c.category for c in grid.cells if c.label == label}) == 10, (scale, label)


@pytest.mark.parametrize(
    "config",
    sorted(EXPERIMENTS.glob("adtr_plus_anomaly_sources/*_*.yaml"))
    + sorted(EXPERIMENTS.glob("cifar10_one_class/*_*.yaml")),
    ids=lambda p: p.stem,
)
def test_stage_configs_parse(config, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["fit", "--config", str(config), "--print_config"])
    assert exit_info.value.code == 0
    assert "adbench.models" in capsys.readouterr().out


def test_adtr_identity_shortcut_tiny(tmp_path, demo_root, monkeypatch):
    runs = _run_tiny("adtr_identity_shortcut", tmp_path, [f"--data.init_args.root={demo_root}"], monkeypatch)
    seen = {}
    for row in runs.itertuples():
        hparams = _hparams(row.run_dir)
        seen[row.variant] = (hparams["reconstruction"], hparams["learned_queries"])
    assert seen == {
        "adtr": ("transformer", True),
        "adtr-no-attention": ("no_attention", True),  # no attention: the query flag has no effect
        "adtr-no-query": ("transformer", False),
        "cnn": ("cnn", True),
    }


def test_adtr_plus_anomaly_sources_tiny(tmp_path, demo_root, monkeypatch):
    setups: set[tuple[bool, frozenset[str], frozenset[str]]] = (
        set()
    )  # (train_on_held_out, test, trained anomalies)
    setup = AnomalyDataModule.setup

    def spy(self: AnomalyDataModule, stage: str | None = None) -> None:
        setup(self, stage)
        test = frozenset(str(s.image_path) for s in self._datasets["test"].samples)
        anomalies = frozenset(str(s.image_path) for s in self._datasets["train"].samples if s.label == 1)
        setups.add((self.train_on_held_out, test, anomalies))

    monkeypatch.setattr(AnomalyDataModule, "setup", spy)
    runs = _run_tiny(
        "adtr_plus_anomaly_sources", tmp_path, [f"--data.init_args.root={demo_root}"], monkeypatch
    )
    assert {row.variant: str(row.stage_train_s).count(";") + 1 for row in runs.itertuples()} == {
        "adtr": 1, "adtr-plus-confetti": 2, "adtr-plus-real": 2,
    }  # fmt: skip
    real = _hparams(runs.set_index("variant").loc["adtr-plus-real", "run_dir"])
    confetti = _hparams(runs.set_index("variant").loc["adtr-plus-confetti", "run_dir"])
    assert real["anomaly_source"] == "data" and confetti["anomaly_source"] == "confetti"
    # every arm tests on the same images; only the real arm's ADTR+ stage trains on the 4 held-out anomalies
    (test,) = {test for _, test, _ in setups}
    (trained,) = [anomalies for on, _, anomalies in setups if on]
    assert len(trained) == 4 and not trained & test
    assert all(not anomalies for on, _, anomalies in setups if not on)
    n_test = {json.loads((Path(d) / "metrics.json").read_text())["test_images"] for d in runs["run_dir"]}
    assert n_test == {25 + 40 - 4}


def test_cifar10_one_class_tiny(tmp_path, monkeypatch):
    root = make_fake_cifar(tmp_path / "cifar")
    overrides = [f"--data.init_args.root={root}", "--data.init_args.verify_checksums=false"]
    runs = _run_tiny("cifar10_one_class", tmp_path / "out", overrides, monkeypatch)
    assert set(zip(runs["variant"], runs["category"], strict=True)) == {
        (v, c) for v in ("adtr", "adtr-plus") for c in ("airplane", "cat")
    }
    for row in runs.itertuples():
        assert row.dataset == "cifar10"
        hparams = _hparams(row.run_dir)
        assert hparams.get("anomaly_source", "none") == ("data" if row.variant == "adtr-plus" else "none")


def test_cifar10_one_class_without_data_says_where_and_how(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    empty = tmp_path / "no_cifar"
    code = _runner().main(
        ["cifar10_one_class", "--scale", "tiny", "--output-dir", str(tmp_path / "out"), "--",
         f"--data.init_args.root={empty}"]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code == 1
    assert "4 of 4 cells failed" in err and "Traceback" not in err
    assert f"CIFAR-10 data not found at {empty / 'cifar-10-batches-py'}" in err
    assert "--data.init_args.download=true" in err
