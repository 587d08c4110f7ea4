"""experiments/ for ADTR and ADTR+: each tiny grid runs end to end through experiments/run.py."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from adbench.benchmark.grid import load_grid
from adbench.cli import main as cli_main
from adbench.data.base import AnomalyDataModule
from tests.experiment_helpers import (
    EXPERIMENTS,
    ROOT,
    cell_hparams,
    check_grids,
    experiments_runner,
    run_tiny,
)
from tests.test_adtr_plus import make_fake_cifar

IMAGE_METRICS = ["image_AUROC", "image_F1max"]
PIXEL_METRICS = ["pixel_AUROC", "pixel_AUPRO", "pixel_AP"]
LABELS = {
    "adtr_identity_shortcut": {"adtr", "adtr-no-attention", "adtr-no-query", "cnn"},
    "adtr_plus_anomaly_sources": {"adtr", "adtr-plus-confetti", "adtr-plus-real"},
    "cifar10_one_class": {"adtr", "adtr-plus"},
}


def _run_tiny(name: str, out: Path, overrides: list[str], monkeypatch: pytest.MonkeyPatch) -> pd.DataFrame:
    """``run_tiny`` with this file's labels; CIFAR has image labels only, so its pixel metrics stay empty."""
    pixel = name != "cifar10_one_class"
    runs = run_tiny(
        name, out, overrides, LABELS[name], IMAGE_METRICS + (PIXEL_METRICS if pixel else []), monkeypatch
    )
    if not pixel:
        assert runs[PIXEL_METRICS].isna().all().all()
    return runs


@pytest.mark.parametrize("name", sorted(LABELS))
def test_grids_of_every_scale_load_with_the_same_variants(name, monkeypatch):
    check_grids(name, LABELS[name], monkeypatch)


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
        hparams = cell_hparams(row.run_dir)
        seen[row.variant] = (hparams["reconstruction"], hparams["learned_queries"])
    assert seen == {
        "adtr": ("transformer", True),
        "adtr-no-attention": ("no_attention", True),  # no attention: the query flag has no effect
        "adtr-no-query": ("transformer", False),
        "cnn": ("cnn", True),
    }


def test_adtr_plus_anomaly_sources_tiny(tmp_path, demo_root, monkeypatch):
    # one (train_on_held_out, test images, trained anomalies) per datamodule set up
    setups: set[tuple[bool, frozenset[str], frozenset[str]]] = set()
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
    real = cell_hparams(runs.set_index("variant").loc["adtr-plus-real", "run_dir"])
    confetti = cell_hparams(runs.set_index("variant").loc["adtr-plus-confetti", "run_dir"])
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
        hparams = cell_hparams(row.run_dir)
        assert hparams.get("anomaly_source", "none") == ("data" if row.variant == "adtr-plus" else "none")


def test_cifar10_one_class_without_data_says_where_and_how(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    empty = tmp_path / "no_cifar"
    code = experiments_runner().main(
        ["cifar10_one_class", "--scale", "tiny", "--output-dir", str(tmp_path / "out"), "--",
         f"--data.init_args.root={empty}"]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code == 1
    assert "4 of 4 cells failed" in err and "Traceback" not in err
    assert f"CIFAR-10 data not found at {empty / 'cifar-10-batches-py'}" in err
    assert "--data.init_args.download=true" in err
