"""The benchmark grid: end to end on a tiny grid, resume, failing cells, summary math."""

import warnings
from pathlib import Path

import pandas as pd
import pytest
import yaml

import adbench.benchmark.runner as runner
from adbench.benchmark.grid import load_grid
from adbench.benchmark.results import RUN_COLUMNS, summary_tables, write_summary
from adbench.errors import ConfigError
from tests.conftest import make_mvtec_tree

TINY = [
    "--model.init_args.pretrained=false",
    "--model.init_args.feature_size=4",
    "--model.init_args.hidden_dim=32",
    "--model.init_args.num_encoder_layers=1",
    "--model.init_args.num_decoder_layers=1",
    "--model.init_args.heads=4",
    "--data.init_args.image_size=32",
    "--data.init_args.num_workers=0",
    "--trainer.max_epochs=1",
    "--trainer.limit_val_batches=0",
    "--trainer.logger=false",
    "--trainer.enable_progress_bar=false",
    "--trainer.enable_model_summary=false",
]


def write_grid(
    tmp_path: Path, root: Path, categories: list[str], extra_runs: list[dict] | None = None
) -> Path:
    spec = {
        "name": "tiny",
        "output_dir": str(tmp_path / "out"),
        "seeds": [0],
        "runs": [
            {
                "config": "configs/adtr_mvtec.yaml",
                "categories": categories,
                "args": [*TINY, f"--data.init_args.root={root}"],
            },
            *(extra_runs or []),
        ],
    }
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


@pytest.fixture
def two_category_tree(tmp_path):
    root = make_mvtec_tree(
        tmp_path / "data", category="bottle", size=32, n_train=4, n_test_good=2, n_per_defect=2
    )
    make_mvtec_tree(root, category="cable", size=32, n_train=4, n_test_good=2, n_per_defect=2, seed=1)
    return root


def test_tiny_grid_end_to_end_with_a_failing_cell_and_resume(tmp_path, two_category_tree, monkeypatch):
    failing = {
        "config": "configs/adtr_mvtec.yaml",
        "categories": ["capsule"],
        "args": [*TINY, f"--data.init_args.root={two_category_tree}"],
    }
    grid = load_grid(write_grid(tmp_path, two_category_tree, ["bottle", "cable"], [failing]))
    assert [c.category for c in grid.cells] == ["bottle", "cable", "capsule"]
    calls = []
    real = runner.run_cell
    monkeypatch.setattr(
        runner, "run_cell", lambda cell, root: calls.append(cell.category) or real(cell, root)
    )

    frame = runner.run_grid(grid, launcher="inprocess")
    assert calls == ["bottle", "cable", "capsule"]
    runs = pd.read_csv(grid.results_dir / "runs.csv")
    assert list(runs.columns[: len(RUN_COLUMNS)]) == RUN_COLUMNS
    assert runs.set_index("category")["status"].to_dict() == {
        "bottle": "ok",
        "cable": "ok",
        "capsule": "failed",
    }
    assert (
        "capsule" in runs.set_index("category").loc["capsule", "error"]
    )  # missing data, recorded not raised
    ok = runs[runs.status == "ok"]
    assert ok["image_AUROC"].between(0, 1).all() and (ok["model"] == "adtr").all()
    assert (grid.results_dir / "summary.md").read_text().count("| mvtec |") >= 2
    assert len(frame) == 3

    # a rerun retries only the failed cell
    calls.clear()
    runner.run_grid(grid, launcher="inprocess")
    assert calls == ["capsule"]

    # simulate a kill before cable's row was written: only cable runs again, no duplicated rows
    runs = pd.read_csv(grid.results_dir / "runs.csv")
    runs[runs.category != "cable"].to_csv(grid.results_dir / "runs.csv", index=False)
    calls.clear()
    runner.run_grid(
        load_grid(write_grid(tmp_path, two_category_tree, ["bottle", "cable"])), launcher="inprocess"
    )
    assert calls == ["cable"]
    final = pd.read_csv(grid.results_dir / "runs.csv")
    assert sorted(final.category) == ["bottle", "cable", "capsule"]


def test_multi_stage_cell_chains_init_from(tmp_path, monkeypatch):
    """Each later stage starts from the previous stage's final weights; the last stage is tested."""
    from types import SimpleNamespace

    from adbench.benchmark import cell as cell_module
    from adbench.benchmark.grid import Cell
    from adbench.callbacks import AnomalyMetrics

    seen, tested = [], []

    class FakeTrainer:
        def __init__(self, number: int) -> None:
            self.log_dir = str(tmp_path / f"stage{number}")
            metrics = AnomalyMetrics()
            metrics.results = {"model": f"m{number}", "image_AUROC": 0.5}
            self.callbacks = [metrics]

        def save_checkpoint(self, path) -> None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            Path(path).write_text("weights")

        def test(self, model, datamodule=None, verbose=True) -> None:
            tested.append(model)

    class FakeCLI:
        def __init__(self, args) -> None:
            seen.append(args)
            self.model = SimpleNamespace(train_seconds=2.0 + len(seen))
            self.trainer = FakeTrainer(len(seen) - 1)
            self.datamodule = None

    monkeypatch.setattr("adbench.cli.build_cli_class", lambda: FakeCLI)
    row = cell_module.run_cell(Cell(("a.yaml", "b.yaml", "c.yaml"), "bottle", 3, ("--x=1",)), tmp_path)
    assert [a[2] for a in seen] == ["a.yaml", "b.yaml", "c.yaml"]
    assert all("--x=1" in a and "--seed_everything=3" in a for a in seen)
    assert not any("init_from" in a for a in seen[0])
    # earlier stages fit in their own folder, the final stage in the cell's (its checkpoints/ is the cell's)
    roots = [next(x for x in a if x.startswith("--trainer.default_root_dir=")) for a in seen]
    assert roots == [
        f"--trainer.default_root_dir={d}" for d in (tmp_path / "stage0", tmp_path / "stage1", tmp_path)
    ]
    assert f"--model.init_args.init_from={tmp_path / 'stage0' / 'stage0_final.ckpt'}" in seen[1]
    assert f"--model.init_args.init_from={tmp_path / 'stage1' / 'stage1_final.ckpt'}" in seen[2]
    assert row["model"] == "m2" and row["seed"] == 3
    assert len(tested) == 1 and tested[0].train_seconds == 3.0 + 4.0 + 5.0  # all stages' training time
    assert row["stage_train_s"] == "3.0;4.0;5.0"  # and each stage's own


def test_grid_file_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"runs": [{"config": "configs/none.yaml", "categories": ["x"]}]}))
    with pytest.raises(ConfigError, match="none.yaml"):
        load_grid(bad)
    bad.write_text(yaml.safe_dump({"runz": []}))
    with pytest.raises(ConfigError, match="unknown keys"):
        load_grid(bad)
    bad.write_text(
        yaml.safe_dump(
            {
                "runs": [
                    {
                        "config": "configs/adtr_mvtec.yaml",
                        "categories": ["a"],
                        "category_args": {"a": ["--x=1"]},
                    }
                ]
            }
        )
    )
    assert load_grid(bad).cells[0].args == ("--x=1",)
    twice = {"config": "configs/adtr_mvtec.yaml", "categories": ["a"]}
    bad.write_text(yaml.safe_dump({"runs": [twice, {**twice, "args": ["--trainer.max_epochs=2"]}]}))
    with pytest.raises(ConfigError, match="distinct `label`s"):
        load_grid(bad)
    bad.write_text(yaml.safe_dump({"runs": [twice, {**twice, "label": "adtr-long"}]}))
    assert [c.key for c in load_grid(bad).cells] == ["configs/adtr_mvtec.yaml|a|0", "adtr-long|a|0"]


def test_labelled_runs_of_one_model_get_their_own_columns():
    frame = pd.DataFrame(
        [
            dict(
                model="dsr", variant=v, dataset="mvtec", category="bottle", seed=0, image_AUROC=a, status="ok"
            )
            for v, a in [(None, 0.9), ("dsr-stage2", 0.7)]
        ]
    ).reindex(columns=RUN_COLUMNS)
    auroc = summary_tables(frame)["image_AUROC"]
    assert list(auroc.columns) == ["dsr", "dsr (paper)", "dsr-stage2"]
    assert auroc.loc[("mvtec", "bottle"), "dsr-stage2"] == pytest.approx(0.7)
    assert auroc.loc[("mvtec", "bottle"), "dsr"] == pytest.approx(0.9)


def test_summary_means_and_paper_columns(tmp_path):
    rows = [
        ("dsr", "bottle", 0, 0.90, 0.50),
        ("dsr", "bottle", 1, 0.80, 0.40),  # two seeds: mean 0.85 / 0.45
        ("dsr", "cable", 0, 0.70, 0.30),
        ("adtr", "bottle", 0, 0.60, float("nan")),
    ]
    frame = pd.DataFrame(
        [
            dict(
                model=m,
                dataset="mvtec",
                category=c,
                seed=s,
                image_AUROC=a,
                pixel_AP=p,
                status="ok",
                train_s=1.0,
                infer_ms_per_image=2.0,
                peak_mem_MB=3.0,
            )
            for m, c, s, a, p in rows
        ]
        + [dict(model="dsr", dataset="mvtec", category="grid", seed=0, status="failed", error="boom")]
    ).reindex(columns=RUN_COLUMNS)
    tables = summary_tables(frame)
    auroc = tables["image_AUROC"]
    assert auroc.loc[("mvtec", "bottle"), "dsr"] == pytest.approx(0.85)
    assert auroc.loc[("", "mean"), "dsr"] == pytest.approx((0.85 + 0.70) / 2)
    assert auroc.loc[("", "mean"), "adtr"] == pytest.approx(0.60)
    # DSR's paper numbers: bottle 100.0, cable 93.8 -> mean over the same categories
    assert auroc.loc[("mvtec", "cable"), "dsr (paper)"] == pytest.approx(0.938)
    assert auroc.loc[("", "mean"), "dsr (paper)"] == pytest.approx((1.0 + 0.938) / 2)
    assert "adtr (paper)" not in auroc.columns
    text = write_summary(frame, tmp_path / "summary.md", "t")
    assert "| mvtec | bottle | 60.0 | 85.0 | 100.0 |" in text
    assert "boom" in text


@pytest.mark.parametrize("launcher", ["processes", "submitit"])
def test_cells_in_separate_processes_and_as_submitit_jobs(tmp_path, launcher):
    """The per-GPU process launcher and the submitit launcher (its local executor) record the same rows."""
    root = make_mvtec_tree(
        tmp_path / "data", category="bottle", size=32, n_train=4, n_test_good=2, n_per_defect=2
    )
    grid = load_grid(write_grid(tmp_path, root, ["bottle"]))
    slurm = {"cluster": "local", "timeout_min": 10} if launcher == "submitit" else None
    frame = runner.run_grid(grid, launcher=launcher, gpus=1, slurm=slurm)
    assert frame["status"].tolist() == ["ok"], frame["error"].tolist()
    assert 0 <= frame["image_AUROC"].iloc[0] <= 1 and frame["model"].iloc[0] == "adtr"


def test_cell_processes_get_a_gpu_each_or_a_share_of_the_cores(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr(runner.os, "cpu_count", lambda: 16)
    assert runner.cell_environment(3, 4, cuda_devices=4)["CUDA_VISIBLE_DEVICES"] == "3"
    assert "OMP_NUM_THREADS" not in runner.cell_environment(3, 4, cuda_devices=4)
    cpu = runner.cell_environment(1, 4, cuda_devices=0)
    assert cpu["OMP_NUM_THREADS"] == "4" and "CUDA_VISIBLE_DEVICES" not in cpu
    assert runner.cell_environment(0, 32, cuda_devices=0)["OMP_NUM_THREADS"] == "1"
    monkeypatch.setenv("OMP_NUM_THREADS", "2")  # the user's choice wins
    assert runner.cell_environment(0, 4, cuda_devices=0)["OMP_NUM_THREADS"] == "2"


@pytest.mark.parametrize("path", sorted(Path("configs").glob("benchmark*.yaml")), ids=lambda p: p.stem)
def test_every_benchmark_config_loads_with_valid_categories(path):
    from adbench.data import MVTEC_AD_CATEGORIES
    from adbench.data.demo_build import DEMO_CATEGORIES

    grid = load_grid(path)
    assert grid.cells
    for cell in grid.cells:
        data_class = yaml.safe_load(Path(cell.stages[-1]).read_text())["data"]["class_path"]
        valid = {"adbench.data.Demo": DEMO_CATEGORIES, "adbench.data.MVTecAD": MVTEC_AD_CATEGORIES}.get(
            data_class
        )
        assert valid is None or cell.category in valid, (path, cell.category)


def test_benchmark_command_with_the_configs_own_wandb_logger(tmp_path, two_category_tree, monkeypatch):
    """The real loggers (CSV + W&B offline) on: cells and the summary run must close their W&B runs cleanly."""
    from adbench.benchmark.commands import benchmark_main

    config = Path("configs/adtr_mvtec.yaml").resolve()
    monkeypatch.chdir(tmp_path)  # the config's loggers write to ./results

    tiny = [a for a in TINY if not a.startswith("--trainer.logger")]
    spec = {
        "name": "wandb",
        "output_dir": str(tmp_path / "out"),
        "seeds": [0],
        "runs": [
            {
                "config": str(config),
                "categories": ["bottle"],
                "args": [*tiny, f"--data.init_args.root={two_category_tree}"],
            }
        ],
    }
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(spec))
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        assert benchmark_main(["--config", str(path)]) == 0
    assert not [w for w in record if "W&B" in str(w.message)], [str(w.message) for w in record]
    runs = pd.read_csv(tmp_path / "out" / "wandb" / "runs.csv")
    assert runs["status"].tolist() == ["ok"], runs.get("error")
    assert Path(runs["run_dir"][0]).is_relative_to(tmp_path / "results")
    offline = sorted((tmp_path / "results" / "wandb").glob("offline-run-*"))
    offline += sorted((tmp_path / "out" / "wandb").glob("**/offline-run-*"))
    assert len(offline) == 2, offline  # the cell's run and the benchmark's summary run
