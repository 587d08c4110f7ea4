"""benchmarks/bench_models.py in --quick mode: results.json and results.md are complete (no timing checks)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_models.py"


@pytest.fixture
def bench_models():
    spec = importlib.util.spec_from_file_location("bench_models", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    threads = torch.get_num_threads()
    yield module
    torch.set_num_threads(threads)


def test_quick_run_writes_json_and_table(bench_models, tmp_path):
    out = tmp_path / "bench" / "results.json"
    models = ["fractalad", "adtr"]
    # ADTR shrunk further (one layer each side, width 64): the test checks the plumbing, not the paper's sizes.
    bench_models.main(
        ["--quick", "--models", *models, "--threads", "1", "--batch", "2", "--no-anomalib", "--out", str(out)]
        + [
            "--set",
            "adtr.hidden_dim=64",
            "--set",
            "adtr.num_encoder_layers=1",
            "--set",
            "adtr.num_decoder_layers=1",
        ]
    )

    results = json.loads(out.read_text())
    assert results["meta"]["quick"] is True
    assert results["meta"]["image_size"] == 64
    rows = results["results"]
    assert sorted({r["model"] for r in rows}) == sorted(models)
    for row in rows:
        assert "error" not in row
        assert row["ms_per_image"] > 0
        assert row["images_per_s"] > 0
        assert row["peak_memory_infer_mb"] > 0
    for model in models:
        batched = [r for r in rows if r["model"] == model and r["batch"] == 2]
        assert len(batched) == 1
        assert batched[0]["train_images_per_s"] > 0
    adtr = next(r for r in rows if r["model"] == "adtr")
    assert adtr["overrides"] == {"hidden_dim": 64, "num_encoder_layers": 1, "num_decoder_layers": 1}

    table = out.with_suffix(".md").read_text()
    table_rows = [line for line in table.splitlines() if line.startswith("| ") and "---" not in line]
    body = table_rows[1:]  # without the header
    for model in models:
        mine = [line for line in body if line.startswith(f"| {model} |")]
        assert len(mine) == 2, mine  # one row per batch size (1 and 2)
    assert len(body) == 2 * len(models)


def test_model_spec_forces_random_weights(bench_models):
    for name in ("adtr", "adtr_plus", "fractalad", "dsr"):
        _, init_args = bench_models.model_spec(name)
        assert init_args["pretrained"] is False
        assert init_args["init_from"] is None
    _, dsr = bench_models.model_spec("dsr")
    assert (dsr["hidden_channels"], dsr["residual_channels"], dsr["residual_layers"]) == (128, 64, 2)
    assert (dsr["num_embeddings"], dsr["embedding_dim"]) == (4096, 128)
