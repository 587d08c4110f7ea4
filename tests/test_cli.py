"""The adbench command: help, config parsing, clear one-line errors, and a tiny run of every config."""

import json
from pathlib import Path

import pytest
import yaml

from adbench.cli import build_cli_class, main
from tests.conftest import make_mvtec3d_tree, make_mvtec_tree

CONFIGS = sorted(p for p in Path("configs").glob("*.yaml") if not p.name.startswith("benchmark"))
# Configs written at the end of the session whose tiny run has not yet been seen passing on this machine: they
# still run, but a failure is reported as xfail instead of failing CI (see the issue notes; remove when seen green).
UNVERIFIED_RUNS: set[str] = set()
RUN_CASES = [
    pytest.param(p, marks=pytest.mark.xfail(reason="tiny run not yet verified", strict=False))
    if p.stem in UNVERIFIED_RUNS
    else p
    for p in CONFIGS
]


def test_top_level_help_lists_every_command(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for word in (
        "fit",
        "validate",
        "test",
        "predict",
        "adbench data demo",
        "adbench data download",
        "adbench benchmark",
    ):
        assert word in out


def test_fit_help_documents_model_options(capsys):
    with pytest.raises(SystemExit):
        main(["fit", "--model.help", "adbench.models.ADTR"])
    out = capsys.readouterr().out
    assert "score_pool_size" in out and "average-pooling window" in out


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.stem)
def test_every_config_parses(config, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(config), "--print_config"])
    assert exit_info.value.code == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["model"]["class_path"].startswith("adbench.models")
    assert printed["data"]["class_path"].startswith("adbench.data")


def make_ksdd2_tree(root: Path) -> Path:
    """A tiny KSDD2 layout: ``root/{train,test}/<id>.png`` with ``<id>_GT.png`` masks."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, flags in [("train", [0] * 8 + [1, 1]), ("test", [0, 0, 0, 1, 1])]:
        (root / split).mkdir(parents=True)
        for i, flag in enumerate(flags):
            Image.fromarray(rng.integers(90, 110, (64, 32, 3), dtype=np.uint8)).save(
                root / split / f"{i}.png"
            )
            mask = np.zeros((64, 32), np.uint8)
            if flag:
                mask[20:30, 10:20] = 255
            Image.fromarray(mask).save(root / split / f"{i}_GT.png")
    return root


def tiny_run_args(config: Path, tmp_path: Path, demo_root: Path) -> list[str]:
    """Overrides that shrink a config to a few steps on a tiny generated tree (or the demo set)."""
    spec = yaml.safe_load(config.read_text())
    data_class = spec["data"]["class_path"].rsplit(".", 1)[-1]
    category = spec["data"]["init_args"].get("category", "bottle")
    args = [
        "--trainer.max_epochs=1",
        "--trainer.limit_train_batches=2",
        "--trainer.limit_val_batches=1",
        "--trainer.logger=false",
        f"--trainer.default_root_dir={tmp_path}",
        "--data.init_args.num_workers=0",
        "--data.init_args.image_size=64",
        "--data.init_args.batch_size=4",
    ]
    if spec["data"]["init_args"].get("center_crop"):
        args.append("--data.init_args.center_crop=56")
    if "pretrained" in spec["model"].get("init_args", {}) and "lite" not in str(
        spec["model"]["init_args"].get("backbone")
    ):
        args.append("--model.init_args.pretrained=false")
    if data_class in ("MVTecAD", "Folder", "ImageFolder"):
        args.append(
            f"--data.init_args.root={make_mvtec_tree(tmp_path / 'data', category=category or 'bottle')}"
        )
    elif data_class == "Demo":
        args.append(f"--data.init_args.root={demo_root}")
    elif data_class == "CIFAR10OneClass":
        from tests.test_adtr_plus import make_fake_cifar

        root = make_fake_cifar(tmp_path / "cifar")
        args += [f"--data.init_args.root={root}", "--data.init_args.verify_checksums=false"]
    elif data_class == "MVTec3D":
        args.append(f"--data.init_args.root={make_mvtec3d_tree(tmp_path / 'data', category=category)}")
    elif data_class == "KSDD2":
        args.append(f"--data.init_args.root={make_ksdd2_tree(tmp_path / 'ksdd2')}")
    return args + SHRINK.get(spec["model"]["class_path"], [])


# Paper-sized models shrunk for the tiny run (the config's own sizes are exercised by --print_config above).
SHRINK = {
    "adbench.models.intra.InTra": [
        "--model.init_args.patch_size=8", "--model.init_args.embed_dim=32", "--model.init_args.depth=2",
        "--model.init_args.heads=2", "--model.init_args.windows_per_image=8",
    ],
}  # fmt: skip


@pytest.mark.parametrize("config", RUN_CASES, ids=lambda p: p.stem)
def test_every_config_runs_a_tiny_fit_and_test(config, tmp_path, demo_root):
    cli = build_cli_class()(
        args=["fit", "--config", str(config), *tiny_run_args(config, tmp_path, demo_root)]
    )
    cli.trainer.test(cli.model, datamodule=cli.datamodule, verbose=False)
    results = json.loads((tmp_path / "metrics.json").read_text())
    assert results["model"] == cli.model.model_name
    test_set = cli.datamodule.dataset("test")
    labels = (
        set(test_set.labels.tolist()) if hasattr(test_set, "labels") else {s.label for s in test_set.samples}
    )
    if labels == {0, 1}:
        assert 0.0 <= results["image_AUROC"] <= 1.0
    else:  # normal images only (DSR stage 1): no AUROC to report, and no made-up number either
        assert results["image_AUROC"] is None
    assert results["infer_ms_per_image"] > 0


def test_fit_then_test_from_checkpoint_through_the_command(tmp_path, capsys):
    root = make_mvtec_tree(tmp_path / "data", category="bottle")
    common = [
        "--config", "configs/adtr_mvtec.yaml",
        f"--data.init_args.root={root}", "--data.init_args.num_workers=0", "--data.init_args.image_size=64",
        "--model.init_args.pretrained=false", "--model.init_args.feature_size=4",
        f"--trainer.default_root_dir={tmp_path}", "--trainer.limit_val_batches=0",
    ]  # fmt: skip
    logger = [
        "--trainer.logger=lightning.pytorch.loggers.CSVLogger",
        f"--trainer.logger.save_dir={tmp_path / 'logs'}",
    ]
    assert main(["fit", *common, *logger, "--trainer.max_epochs=2"]) == 0
    (last,) = list((tmp_path / "logs").rglob("last.ckpt"))
    assert main(["test", *common, *logger, f"--ckpt_path={last}"]) == 0
    (metrics_file,) = list((tmp_path / "logs").rglob("metrics.json"))
    assert "adtr/mvtec/bottle" in str(metrics_file)  # the logger name comes from model, dataset, category
    results = json.loads(metrics_file.read_text())
    assert results["train_s"] > 0  # kept in the checkpoint, reported by the separate test run
    assert {"image_AUROC", "pixel_AUROC", "pixel_AUPRO", "image_F1max", "pixel_AP", "peak_mem_MB"} <= set(
        results
    )
    assert list((metrics_file.parent / "images").glob("*.png"))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--data.init_args.root=/nonexistent/mvtec"], "adbench data download mvtec"),
        (["--data.init_args.category=bottel"], "valid: bottle, cable"),
        (["--model.init_args.pretrained=true"], "pretrained: false"),
    ],
)
def test_bad_input_gives_one_line_error(tmp_path, capsys, args, message):
    root = make_mvtec_tree(tmp_path / "data", category="bottle")
    base = [
        "fit",
        "--config",
        "configs/adtr_mvtec.yaml",
        f"--data.init_args.root={root}",
        "--model.init_args.pretrained=false",
        "--trainer.logger=false",
        f"--trainer.default_root_dir={tmp_path}",
        "--data.init_args.num_workers=0",
        "--trainer.max_epochs=1",
    ]
    assert main([*base, *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("adbench: error:") and message in err[-1]
    assert "Traceback" not in "\n".join(err)


def test_corrupt_image_in_worker_gives_one_line_error(tmp_path, capsys):
    root = make_mvtec_tree(tmp_path / "data", category="bottle")
    for image in (root / "bottle" / "train" / "good").iterdir():
        image.write_bytes(b"garbage")
    args = [
        "fit",
        "--config",
        "configs/adtr_mvtec.yaml",
        f"--data.init_args.root={root}",
        "--model.init_args.pretrained=false",
        "--trainer.logger=false",
        f"--trainer.default_root_dir={tmp_path}",
        "--data.init_args.num_workers=1",
        "--trainer.max_epochs=1",
    ]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("adbench: error: cannot decode image") and "train/good" in err[-1]


def test_unknown_config_key_is_reported_by_jsonargparse(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", "configs/adtr_mvtec.yaml", "--model.init_args.no_such_option=1"])
    assert exit_info.value.code != 0
    assert "no_such_option" in capsys.readouterr().err


def test_data_download_ksdd2_explains_manual_download(tmp_path, capsys):
    assert main(["data", "download", "ksdd2", "--root", str(tmp_path)]) == 2
    assert "ViCoS" in capsys.readouterr().err
