"""Reliability: DDP equals one process, a SIGKILLed fit resumes to the same result, safe loading, preflight."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from adbench.callbacks.preflight import check_writable
from adbench.errors import ConfigError, WeightsError
from adbench.models.components.backbone import load_state_dict_file
from tests.conftest import make_mvtec_tree

REPO = Path(__file__).resolve().parents[1]
ADBENCH = str(Path(sys.executable).parent / "adbench")

TINY_ADTR = [
    "--config", "configs/adtr_mvtec.yaml",
    "--model.init_args.pretrained=false", "--model.init_args.feature_size=4", "--model.init_args.hidden_dim=32",
    "--model.init_args.num_encoder_layers=1", "--model.init_args.num_decoder_layers=1", "--model.init_args.heads=4",
    "--data.init_args.image_size=32", "--data.init_args.num_workers=0", "--data.init_args.batch_size=4",
    "--data.init_args.eval_batch_size=1", "--data.init_args.val_split=0",
    "--trainer.limit_val_batches=0", "--trainer.enable_progress_bar=false", "--trainer.deterministic=true",
    "--seed_everything=0",
]  # fmt: skip


def run_adbench(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO), WANDB_MODE="offline")
    return subprocess.run([ADBENCH, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=900)


def csv_logger(save_dir: Path) -> list[str]:
    return ["--trainer.logger=lightning.pytorch.loggers.CSVLogger", f"--trainer.logger.save_dir={save_dir}"]


def only(paths) -> Path:
    found = list(paths)
    assert len(found) == 1, found
    return found[0]


def test_ddp_fit_and_test_match_one_process(tmp_path):
    root = make_mvtec_tree(
        tmp_path / "data", category="bottle", size=32, n_train=8, n_test_good=3, n_per_defect=3
    )
    data = [f"--data.init_args.root={root}"]
    ddp = ["--trainer.strategy=ddp", "--trainer.devices=2", "--trainer.accelerator=cpu"]
    fit = run_adbench("fit", *TINY_ADTR, *data, *ddp, *csv_logger(tmp_path / "fit"), "--trainer.max_epochs=1")
    assert fit.returncode == 0, fit.stderr[-3000:]
    checkpoint = only((tmp_path / "fit").rglob("last.ckpt"))
    results = {}
    for name, extra in [("single", ["--trainer.devices=1", "--trainer.accelerator=cpu"]), ("ddp", ddp)]:
        test = run_adbench(
            "test", *TINY_ADTR, *data, *extra, *csv_logger(tmp_path / name), f"--ckpt_path={checkpoint}"
        )
        assert test.returncode == 0, test.stderr[-3000:]
        results[name] = json.loads(only((tmp_path / name).rglob("metrics.json")).read_text())
    assert results["single"]["test_images"] == 9  # odd: DistributedSampler pads one duplicate
    for metric in ("image_AUROC", "pixel_AUROC", "pixel_AUPRO", "image_F1max", "pixel_AP", "image_AP"):
        assert results["ddp"][metric] == pytest.approx(results["single"][metric], abs=1e-12), metric


def test_sigkilled_fit_resumes_with_ckpt_path_last_to_the_same_result(tmp_path):
    root = make_mvtec_tree(
        tmp_path / "data", category="bottle", size=32, n_train=8, n_test_good=2, n_per_defect=2
    )
    base = [*TINY_ADTR, f"--data.init_args.root={root}", "--trainer.max_epochs=3"]
    straight = run_adbench("fit", *base, *csv_logger(tmp_path / "straight"))
    assert straight.returncode == 0, straight.stderr[-3000:]

    killer = ["--trainer.callbacks+=tests.fault_injection.KillAtStep", "--trainer.callbacks.step=3"]
    killed = run_adbench("fit", *base, *csv_logger(tmp_path / "resumed"), *killer)
    assert killed.returncode == -9  # SIGKILL in the middle of the second epoch (2 batches per epoch)
    resumed = run_adbench("fit", *base, *csv_logger(tmp_path / "resumed"), "--ckpt_path=last")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Restoring states from the checkpoint" in resumed.stderr + resumed.stdout

    final = {name: only((tmp_path / name).rglob("last.ckpt")) for name in ("straight", "resumed")}
    weights = {name: torch.load(path, weights_only=True)["state_dict"] for name, path in final.items()}
    assert weights["straight"].keys() == weights["resumed"].keys()
    for key, value in weights["straight"].items():
        assert torch.equal(value, weights["resumed"][key]), key
    for name, path in final.items():
        test = run_adbench("test", *base, *csv_logger(tmp_path / name), "--ckpt_path=last")
        assert test.returncode == 0, test.stderr[-3000:]
        assert only((tmp_path / name).rglob("metrics.json")).parent == path.parents[1]  # same run folder


def test_malicious_weights_file_is_refused_without_running_code(tmp_path):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "evil.pth"
    path.write_bytes(pickle.dumps({"weight": Payload()}))
    with pytest.raises(WeightsError, match="could not be read"):
        load_state_dict_file(path)
    assert not marker.exists()


def test_unwritable_or_full_log_dir_fails_before_training(tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match="only .* MB free"):
        check_writable(tmp_path / "new" / "run", min_free_mb=1e12)
    if os.geteuid() != 0:  # root can write anywhere: the permission case needs a normal user
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        with pytest.raises(ConfigError, match="not writable"):
            check_writable(locked / "run", min_free_mb=1)
    import tempfile

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "NamedTemporaryFile", refuse)
    with pytest.raises(ConfigError, match="not writable.*default_root_dir"):
        check_writable(tmp_path / "run", min_free_mb=1)
