"""experiments/: each study's script runs at its smallest setting and its benchmark files load."""

import importlib.util
import json
import math
from pathlib import Path

from adbench.benchmark.grid import load_grid

ROOT = Path(__file__).resolve().parents[1]
SHORTCUT = ROOT / "experiments" / "adtr_identity_shortcut"


def _load(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _finite(value) -> bool:
    if isinstance(value, dict):
        return all(_finite(v) for v in value.values())
    return isinstance(value, int | float) and math.isfinite(value)


def test_identity_shortcut_toy_tiny(tmp_path):
    toy = _load(SHORTCUT / "toy.py")
    toy.main(["--scale", "tiny", "--output-dir", str(tmp_path)])
    report = json.loads((tmp_path / "toy.json").read_text())
    assert set(report["summary"]) == set(toy.MODELS)
    for name, stats in report["summary"].items():
        assert _finite(stats), name
        for key in ("train_loss", "error_normal", "error_anomalous", "token_auroc"):
            assert key in stats, (name, key)
    fc = report["summary"]["fc"]
    assert fc["train_loss"]["mean"] < fc["initial_train_loss"]["mean"]
    assert {"w_minus_i", "b_norm"} <= set(fc)
    history = report["runs"]["fc"][0]["history"]
    assert history[0]["step"] == 0 and history[-1]["step"] == report["config"]["steps"]
    assert (tmp_path / "toy.md").read_text().count("\n| ") == len(toy.MODELS) + 1
    assert (tmp_path / "toy.png").stat().st_size > 0


def test_identity_shortcut_ablation_grid(monkeypatch):
    monkeypatch.chdir(ROOT)  # run configs are relative to the repository root
    grid = load_grid(SHORTCUT / "demo.yaml")
    assert {cell.label for cell in grid.cells} == {"adtr", "adtr-no-attention", "adtr-no-query", "cnn"}
    assert {cell.category for cell in grid.cells} == {"brick", "coin"}
    args = {cell.label: cell.args for cell in grid.cells}
    assert args == {
        "adtr": (),
        "adtr-no-attention": ("--model.init_args.reconstruction=no_attention",),
        "adtr-no-query": ("--model.init_args.learned_queries=false",),
        "cnn": ("--model.init_args.reconstruction=cnn",),
    }
    assert grid.results_dir == Path("experiments/adtr_identity_shortcut/results/demo")
