"""Running one benchmark cell: every stage's fit, then the test, through the CLI machinery.

Also a module entry point (``python -m adbench.benchmark.cell SPEC.json RESULT.json``) so a cell can run in
its own process (one per GPU) or as a SLURM job.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from adbench.benchmark.grid import Cell
from adbench.io import atomic_write_json


def finish_wandb() -> None:
    """Closes the active W&B run, so the next cell starts its own."""
    try:
        import wandb
    except ImportError:
        return
    if wandb.run is not None:
        wandb.finish()


def run_cell(cell: Cell, root_dir: Path) -> dict[str, Any]:
    """Fits every stage of ``cell`` (each from the previous stage's weights) and tests the last one.

    Returns:
        The result row: metrics, timing (``train_s`` of all stages and ``stage_train_s``, each stage's
        seconds joined by ``;``), names, ``run_dir``.
    """
    from adbench.callbacks import AnomalyMetrics
    from adbench.cli import build_cli_class

    cli_class = build_cli_class()
    previous: Path | None = None
    cli = None
    stage_seconds: list[float] = []
    last = len(cell.stages) - 1
    for number, stage in enumerate(cell.stages):
        # Earlier stages of a chain get their own folder: without a logger they would share root_dir's
        # checkpoints/ with the final stage (last.ckpt, then last-v1.ckpt), and `--ckpt_path last` or a
        # reader of root_dir/checkpoints/last.ckpt would pick up an earlier stage's weights.
        stage_root = root_dir if number == last else root_dir / f"stage{number}"
        args = [
            "fit",
            "--config", stage,
            f"--data.init_args.category={cell.category}",
            f"--seed_everything={cell.seed}",
            f"--trainer.default_root_dir={stage_root}",
            *cell.args,
        ]  # fmt: skip
        if previous is not None:
            args.append(f"--model.init_args.init_from={previous}")
        try:
            cli = cli_class(args=args)
            stage_seconds.append(float(getattr(cli.model, "train_seconds", 0.0)))
            if number < last:
                previous = Path(cli.trainer.log_dir or stage_root) / f"stage{number}_final.ckpt"
                cli.trainer.save_checkpoint(previous)
        finally:
            if number < last:
                finish_wandb()
    try:
        cli.model.train_seconds = sum(stage_seconds)
        cli.trainer.test(cli.model, datamodule=cli.datamodule, verbose=False)
        metrics = next(c for c in cli.trainer.callbacks if isinstance(c, AnomalyMetrics))
        return {
            **metrics.results,
            "seed": cell.seed,
            # every stage's own fit time (a chain's train_s is their sum)
            "stage_train_s": ";".join(f"{s:.1f}" for s in stage_seconds),
            "run_dir": str(Path(cli.trainer.log_dir or root_dir).resolve()),
        }
    finally:
        finish_wandb()


def main(argv: list[str] | None = None) -> int:
    """``python -m adbench.benchmark.cell SPEC.json RESULT.json``: runs the cell, writes its row."""
    spec_path, result_path = (argv if argv is not None else sys.argv[1:])[:2]
    spec = json.loads(Path(spec_path).read_text())
    cell = Cell(
        tuple(spec["stages"]), spec["category"], int(spec["seed"]), tuple(spec["args"]), spec.get("label", "")
    )
    row = run_cell(cell, Path(spec["root_dir"]))
    atomic_write_json(result_path, row)
    return 0


def write_spec(cell: Cell, root_dir: Path, path: Path) -> Path:
    """Writes the JSON spec ``main`` reads."""
    return atomic_write_json(path, {**asdict(cell), "root_dir": str(root_dir)})


if __name__ == "__main__":
    sys.exit(main())
