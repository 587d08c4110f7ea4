"""Shared checks for the tests of experiments/: run a tiny grid through experiments/run.py, read a cell's model."""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

import pandas as pd
import pytest
import torch

from adbench.benchmark.grid import load_grid

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENTS = ROOT / "experiments"


def experiments_runner() -> ModuleType:
    """experiments/run.py as a module (it is a script, not part of the package)."""
    spec = importlib.util.spec_from_file_location("experiments_run", EXPERIMENTS / "run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_tiny(
    name: str,
    out: Path,
    overrides: Sequence[str],
    labels: set[str],
    metrics: Sequence[str],
    monkeypatch: pytest.MonkeyPatch,
) -> pd.DataFrame:
    """Runs ``experiments/<name>/tiny.yaml`` through run.py's ``main``; returns runs.csv after checking it.

    Checks: exit code 0, every cell ok and present once, the variants are ``labels``, every value of
    ``metrics`` lies in [0, 1], and summary.md and the image-AUROC bar plot were written.
    """
    monkeypatch.chdir(ROOT)  # grids name their configs relative to the repository root
    code = experiments_runner().main([name, "--scale", "tiny", "--output-dir", str(out), "--", *overrides])
    runs = pd.read_csv(out / "tiny" / "runs.csv")
    assert code == 0, runs[["variant", "category", "error"]].to_string()
    assert (runs["status"] == "ok").all()
    assert len(runs) == len(load_grid(EXPERIMENTS / name / "tiny.yaml").cells)
    assert set(runs["variant"]) == labels
    for metric in metrics:
        values = runs[metric].astype(float)
        assert values.between(0.0, 1.0).all(), (metric, values.tolist())
    summary = (out / "tiny" / "summary.md").read_text()
    assert all(label in summary for label in labels)
    assert (out / "tiny" / "bars_image_AUROC.png").stat().st_size > 0
    return runs


def cell_hparams(run_dir: str) -> dict:
    """Hyper-parameters of the model a cell tested (its last checkpoint; the tiny cells run without a logger)."""
    path = Path(run_dir) / "checkpoints" / "last.ckpt"
    return torch.load(path, map_location="cpu", weights_only=True)["hyper_parameters"]


def check_grids(name: str, labels: set[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Every scale's grid of ``name`` loads with the same variants, and its README has a demo results section."""
    monkeypatch.chdir(ROOT)
    for scale in ("tiny", "demo", "paper"):
        grid = load_grid(EXPERIMENTS / name / f"{scale}.yaml")
        assert {cell.label for cell in grid.cells} == labels, scale
        assert grid.output_dir == Path(f"experiments/{name}/results")
        assert grid.name == scale
    readme = (EXPERIMENTS / name / "README.md").read_text()
    assert "Results (demo scale)" in readme and "--scale paper" in readme
