"""Fault injection: NaN losses and maps, bad option types, truncated images, hostile archives, a benchmark
killed for real mid-grid, and a failing W&B upload. Each fault must end in one clear line, never silently."""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import re
import signal
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from PIL import Image

from adbench.cli import main
from adbench.data import MVTecAD
from adbench.data.download import DownloadInfo, download_and_extract, safe_extract
from adbench.errors import DataError
from adbench.models import ADTR
from tests.conftest import make_mvtec_tree
from tests.test_reliability import TINY_ADTR

REPO = Path(__file__).resolve().parents[1]
METRICS = ("image_AUROC", "pixel_AUROC", "pixel_AUPRO", "image_F1max", "image_AP", "pixel_AP")


def tiny_tree(root: Path, category: str = "bottle", seed: int = 0) -> Path:
    """8 training images (2 steps of 4 per epoch), 3 good + 6 defective test images, 32x32."""
    return make_mvtec_tree(root, category=category, size=32, n_train=8, seed=seed)


def tiny_args(tmp_path: Path, root: Path, *extra: str) -> list[str]:
    """TINY_ADTR on ``root`` without loggers: run files go straight to ``tmp_path/run``."""
    return [
        *TINY_ADTR,
        f"--data.init_args.root={root}",
        "--data.init_args.category=bottle",
        "--trainer.logger=false",
        f"--trainer.default_root_dir={tmp_path / 'run'}",
        "--trainer.enable_model_summary=false",
        *extra,
    ]


def error_line(capsys) -> str:
    """The last stderr line of an in-process ``main`` run, after checking no traceback was printed."""
    err = capsys.readouterr().err
    assert "Traceback" not in err, err[-3000:]
    lines = err.strip().splitlines()
    assert lines, "nothing on stderr"
    return lines[-1]


def files_named(folder: Path, name: str) -> list[Path]:
    return list(folder.rglob(name)) if folder.exists() else []


# ------------------------------------------------------------------------------------------ NaN loss during fit
def nan_at_step_2(monkeypatch) -> None:
    real = ADTR.compute_loss

    def compute_loss(self, batch):
        losses = real(self, batch)
        if self.training and self.global_step == 2:
            losses["loss"] = losses["loss"] * float("nan")  # still on the graph, like a real divergence
        return losses

    monkeypatch.setattr(ADTR, "compute_loss", compute_loss)


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        ("nan_at_step_2", r"training loss is nan at step 2 \(epoch 1\)"),
        # a real divergence: AdamW moves every weight by ~lr on the first step, the next loss overflows
        ("--model.init_args.lr=1e30", r"training loss is (nan|inf) at step 1 \(epoch 0\)"),
    ],
)
def test_non_finite_loss_stops_fit_with_step_and_hint(tmp_path, capsys, monkeypatch, fault, message):
    root = tiny_tree(tmp_path / "data")
    extra = ["--trainer.max_epochs=3"]
    if fault == "nan_at_step_2":
        nan_at_step_2(monkeypatch)
    else:
        extra.append(fault)
    assert main(["fit", *tiny_args(tmp_path, root, *extra)]) == 2
    line = error_line(capsys)
    assert line.startswith("adbench: error: adtr: ")
    assert re.search(message, line), line
    assert "lower the learning rate" in line and "--trainer.gradient_clip_val" in line
    assert not files_named(tmp_path, "metrics.json")
    # the diverged step never reached a checkpoint: epoch 0's last.ckpt is finite and resumable
    checkpoints = files_named(tmp_path / "run", "*.ckpt")
    assert [p.name for p in checkpoints if p.name == "last.ckpt"] == (
        ["last.ckpt"] if "step_2" in fault else []
    )
    for checkpoint in checkpoints:
        saved = torch.load(checkpoint, weights_only=True, map_location="cpu")
        assert saved["global_step"] == 2
        assert all(torch.isfinite(v).all() for v in saved["state_dict"].values() if v.is_floating_point())


# ---------------------------------------------------------------------------------------- NaN map during test
def test_nan_anomaly_map_names_the_image_and_writes_no_results(tmp_path, capsys, monkeypatch):
    root = tiny_tree(tmp_path / "data")
    real = ADTR.anomaly_map
    calls = []

    def anomaly_map(self, image):
        maps = real(self, image)
        calls.append(len(image))
        if len(calls) == 2:  # the second test batch: its second image turns NaN
            maps = maps.clone()
            maps[1] = float("nan")
        return maps

    monkeypatch.setattr(ADTR, "anomaly_map", anomaly_map)
    args = tiny_args(tmp_path, root, "--data.init_args.eval_batch_size=4")
    assert main(["test", *args]) == 2
    bad = MVTecAD(root=root, category="bottle", image_size=32, num_workers=0).dataset("test").samples[5]
    line = error_line(capsys)
    assert line.startswith(f"adbench: error: adtr: the anomaly map of {bad.image_path} ")
    assert "NaN/inf" in line and "retrain or check the checkpoint" in line
    assert calls == [4, 4]  # stopped at the bad batch, not after the whole test set
    assert not files_named(tmp_path, "metrics.json")
    assert not files_named(tmp_path / "run", "*.png")  # no anomaly-map panels of a half-run test either


# ------------------------------------------------------------------------------------- option of the wrong type
@pytest.mark.parametrize(
    ("option", "key", "expected"),
    [
        ("--model.init_args.hidden_dim=abc", '"hidden_dim"', "Expected a <class 'int'>. Got value: abc"),
        ("--trainer.max_epochs=x", '"trainer.max_epochs"', "Given value: x"),
        ("--data.init_args.val_split=half", '"val_split"', "half"),
    ],
)
def test_option_of_the_wrong_type_exits_2_naming_the_option(capsys, option, key, expected):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", "configs/adtr_mvtec.yaml", option])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    error = err[err.index("\nerror: ") + 1 :].strip().splitlines()  # jsonargparse's block after the usage
    assert key in "\n".join(error) and expected in "\n".join(error), error
    assert len(error) <= 12, error


# ------------------------------------------------------------------------------------------ truncated JPEG
@pytest.mark.parametrize(
    ("size", "verb", "reason"),
    [
        (256, "decode", "image file is truncated"),  # header intact: fails when the test loader decodes it
        (16, "read", "Truncated File Read"),  # header cut: fails at setup, where mask sizes are checked
    ],
    ids=["pixels-cut", "header-cut"],
)
def test_truncated_jpeg_among_test_images_is_one_line_error(tmp_path, capsys, size, verb, reason):
    root = tiny_tree(tmp_path / "data")
    image = root / "bottle" / "test" / "hole" / "009.jpg"
    pixels = torch.randint(
        0, 256, (size, size, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)
    )
    Image.fromarray(pixels.numpy()).save(image, quality=95)
    data = image.read_bytes()
    image.write_bytes(data[: len(data) // 2])
    Image.new("L", (size, size), 255).save(root / "bottle" / "ground_truth" / "hole" / "009_mask.png")

    assert main(["test", *tiny_args(tmp_path, root)]) == 2
    line = error_line(capsys)
    assert line.startswith(f"adbench: error: cannot {verb} image {image}: {reason}"), line
    assert line.endswith("; replace or remove the file")
    assert not files_named(tmp_path, "metrics.json")


# -------------------------------------------------------------------------------------- hostile archive members
def write_archive(path: Path, members: list[tuple[str, bytes]]) -> Path:
    if path.suffix == ".zip":
        with zipfile.ZipFile(path, "w") as handle:
            for name, data in members:
                handle.writestr(zipfile.ZipInfo(name), data)  # ZipInfo keeps the name exactly as given
    else:
        with tarfile.open(path, "w:gz") as handle:
            for name, data in members:
                info = tarfile.TarInfo(name)
                info.size = len(data)
                handle.addfile(info, io.BytesIO(data))
    return path


def snapshot(folder: Path) -> set[Path]:
    return set(folder.rglob("*"))


@pytest.mark.parametrize("kind", ["tar.gz", "zip"])
@pytest.mark.parametrize(
    "bad",
    ["{outside}/evil.txt", "../evil.txt", "bottle/../../evil.txt", "./../evil.txt", "..\\evil.txt"],
    ids=["absolute", "dotdot", "nested-dotdot", "dot-dotdot", "backslash-dotdot"],
)
def test_archive_members_outside_the_target_are_refused(tmp_path, kind, bad):
    outside = tmp_path / "outside"
    outside.mkdir()
    name = bad.format(outside=outside)  # an absolute path a naive extractor would happily write to
    work = tmp_path / "work"
    work.mkdir()
    archive = write_archive(work / f"data.{kind}", [("bottle/train/good/000.png", b"png"), (name, b"pwned")])
    before = snapshot(tmp_path)
    with pytest.raises(DataError, match="points outside the extraction folder; refusing to extract"):
        safe_extract(archive, work / "target" / "inner")
    created = snapshot(tmp_path) - before
    assert all(path.is_relative_to(work / "target") for path in created), created
    assert not any(p.name == "evil.txt" for p in snapshot(tmp_path)), "a member escaped"
    assert not list(outside.iterdir())

    # through the download path: verified, staged, refused, and the dataset root is left untouched
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    root = tmp_path / "root"
    with pytest.raises(DataError, match="refusing to extract"):
        download_and_extract(DownloadInfo("toy", "https://example.invalid/x", digest), root, archive)
    assert list(root.iterdir()) == [], "a refused archive must leave nothing (not even good members)"
    assert not any(p.name == "evil.txt" for p in snapshot(tmp_path))


# ------------------------------------------------------------------------------- benchmark killed mid-grid
def read_rows(path: Path) -> pd.DataFrame:
    return pd.read_csv(path) if path.is_file() else pd.DataFrame(columns=["status"])


def test_benchmark_sigkilled_mid_grid_resumes_without_duplicates(tmp_path):
    root = tiny_tree(tmp_path / "data")
    for seed, category in enumerate(["cable", "capsule"], start=1):
        tiny_tree(root, category=category, seed=seed)
    spec = {
        "name": "killed",
        "output_dir": str(tmp_path / "out"),
        "seeds": [0],
        "runs": [
            {
                "config": "configs/adtr_mvtec.yaml",
                "categories": ["bottle", "cable", "capsule"],
                "args": [
                    *TINY_ADTR[2:],  # without --config: the run's config is the grid's
                    f"--data.init_args.root={root}",
                    "--trainer.max_epochs=3",  # a few seconds per cell
                    "--trainer.enable_model_summary=false",
                    "--trainer.logger=lightning.pytorch.loggers.CSVLogger",
                    f"--trainer.logger.save_dir={tmp_path / 'logs'}",
                ],
            }
        ],
    }
    grid = tmp_path / "grid.yaml"
    grid.write_text(yaml.safe_dump(spec))
    runs_csv = tmp_path / "out" / "killed" / "runs.csv"
    command = [sys.executable, "-m", "adbench.cli", "benchmark", "--config", str(grid)]
    command += ["--launcher", "inprocess", "--no_wandb_summary"]
    env = dict(os.environ, PYTHONPATH=str(REPO), WANDB_MODE="offline")

    log = tmp_path / "killed.log"  # a file, not a pipe: a full pipe would stall the benchmark
    with open(log, "w") as output:
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=output, stderr=subprocess.STDOUT)
    second_cell = tmp_path / "logs" / "adtr" / "mvtec" / "cable"  # its logger's folder: cell 2 is running
    deadline = time.monotonic() + 120
    try:
        while (read_rows(runs_csv)["status"] == "ok").sum() < 1 or not second_cell.exists():
            assert process.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, "the first cell did not finish in time"
            time.sleep(0.05)
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.kill()
        process.wait()
    assert process.returncode == -signal.SIGKILL
    first = read_rows(runs_csv)
    assert len(first) == 1 and first.loc[0, "category"] == "bottle" and first.loc[0, "status"] == "ok", (
        first.to_dict("records")
    )

    rerun = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stdout[-2000:] + rerun.stderr[-3000:]
    assert "[1/3]" not in rerun.stdout and "[2/3]" in rerun.stdout and "[3/3]" in rerun.stdout
    final = read_rows(runs_csv)
    assert sorted(final["category"]) == ["bottle", "cable", "capsule"]  # each cell exactly once
    assert (final["status"] == "ok").all(), final[["category", "status", "error"]]
    pd.testing.assert_series_equal(
        final.set_index("category").loc["bottle"], first.set_index("category").loc["bottle"]
    )  # the finished cell was not rerun nor rewritten
    assert final["run_dir"].is_unique
    for row in final.to_dict("records"):
        written = json.loads((Path(row["run_dir"]) / "metrics.json").read_text())
        assert written["category"] == row["category"]
        assert written["image_AUROC"] == pytest.approx(row["image_AUROC"], abs=1e-12)


# ------------------------------------------------------------------------------------------- W&B failures
@pytest.fixture
def finish_wandb():
    """Closes the W&B run a test opened, so later tests start without one."""
    yield
    import wandb

    if wandb.run is not None:
        wandb.finish()


def check_complete(path: Path) -> None:
    results = json.loads(path.read_text())
    assert {"model", "dataset", "category", "infer_ms_per_image", "peak_mem_MB", *METRICS} <= set(results)
    assert results["test_images"] == 9 and results["category"] == "bottle"
    assert all(0.0 <= results[m] <= 1.0 and math.isfinite(results[m]) for m in METRICS), results


def wandb_args(tmp_path: Path, root: Path) -> list[str]:
    args = tiny_args(tmp_path, root)
    args[args.index("--trainer.logger=false")] = "--trainer.logger=adbench.loggers.WandbLogger"
    return [*args, f"--trainer.logger.save_dir={tmp_path / 'wandb'}", "--trainer.logger.offline=true"]


def unreachable(*args, **kwargs):
    raise ConnectionError("wandb.ai unreachable")


def test_wandb_upload_failure_warns_and_keeps_a_complete_metrics_json(tmp_path, monkeypatch, finish_wandb):
    import wandb.sdk.wandb_run

    monkeypatch.setattr(wandb.sdk.wandb_run.Run, "save", unreachable)
    root = tiny_tree(tmp_path / "data")
    with pytest.warns(
        UserWarning, match=r"could not upload .*metrics\.json to W&B \(wandb\.ai unreachable\)"
    ):
        assert main(["test", *wandb_args(tmp_path, root)]) == 0
    check_complete(tmp_path / "wandb" / "metrics.json")


def test_logger_failing_at_test_end_does_not_lose_metrics_json(tmp_path, monkeypatch, finish_wandb):
    """Lightning sends the epoch's test metrics to the loggers after the callbacks' epoch end: the file is
    already complete on disk when the logger fails, and the logger's error is not hidden."""
    import adbench.loggers

    monkeypatch.setattr(adbench.loggers.WandbLogger, "log_metrics", unreachable)
    root = tiny_tree(tmp_path / "data")
    with pytest.raises(ConnectionError, match="unreachable"):
        main(["test", *wandb_args(tmp_path, root)])
    check_complete(tmp_path / "wandb" / "metrics.json")
