"""Runs a benchmark grid: cells in-process (CPU, one GPU), one process per GPU, or as SLURM jobs.

Every finished or failed cell is written to runs.csv and summary.md at once (atomically), so a kill at any
moment loses at most the running cells; rerunning skips cells recorded as ``ok`` and retries the others.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pandas as pd

from adbench.benchmark.cell import run_cell, write_spec
from adbench.benchmark.grid import Cell, Grid
from adbench.benchmark.results import RUN_COLUMNS, read_runs, write_runs, write_summary


def _row_key(row: dict[str, Any]) -> str:
    label = row.get("label")
    name = label if isinstance(label, str) and label else row["config"]
    return f"{name}|{row['category']}|{int(row['seed'])}"


def _failure_row(cell: Cell, error: BaseException | str, log: Path) -> dict[str, Any]:
    text = error if isinstance(error, str) else traceback.format_exception(error)
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("".join(text))
    lines = [line for line in str(error).strip().splitlines() if line.strip()]
    message = lines[-1] if lines else type(error).__name__
    return {
        "category": cell.category,
        "seed": cell.seed,
        "status": "failed",
        "error": f"{message} (log: {log})",
    }


class GridRun:
    """The state of one benchmark run: result rows keyed by cell, written after every cell.

    Args:
        grid: the parsed benchmark.
    """

    def __init__(self, grid: Grid) -> None:
        self.grid = grid
        self.dir = grid.results_dir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.runs_path = self.dir / "runs.csv"
        self.rows = {_row_key(r): r for r in read_runs(self.runs_path).to_dict("records")}
        self._lock = threading.Lock()

    def pending(self) -> list[Cell]:
        """Cells not yet recorded as ``ok`` (new, failed or interrupted)."""
        return [c for c in self.grid.cells if self.rows.get(c.key, {}).get("status") != "ok"]

    def record(self, cell: Cell, row: dict[str, Any]) -> None:
        """Stores a cell's row and rewrites runs.csv and summary.md atomically."""
        with self._lock:
            self.rows[cell.key] = {
                **row,
                "config": cell.config,
                "label": cell.label,
                "variant": cell.label or row.get("model"),
                "category": cell.category,
                "seed": cell.seed,
            }
            frame = self.frame()
            write_runs(frame, self.runs_path)
            write_summary(frame, self.dir / "summary.md", f"Benchmark {self.grid.name}")

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(list(self.rows.values())).reindex(columns=RUN_COLUMNS)

    def error_log(self, cell: Cell) -> Path:
        return self.dir / "errors" / f"{_safe_name(cell)}.log"

    def cell_dir(self, cell: Cell) -> Path:
        """The cell's ``--trainer.default_root_dir``: its own folder under ``runs/`` (used without loggers)."""
        return self.dir / "runs" / _safe_name(cell)


def _safe_name(cell: Cell) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in cell.key)


def _run_in_process(run: GridRun, cells: list[Cell], announce: Callable[[Cell], None]) -> None:
    for cell in cells:
        announce(cell)
        try:
            row = {**run_cell(cell, run.cell_dir(cell)), "status": "ok", "error": ""}
        except Exception as error:  # noqa: BLE001 - a failing cell is recorded and the grid goes on
            row = _failure_row(cell, error, run.error_log(cell))
        run.record(cell, row)


def cell_environment(slot: int, slots: int, cuda_devices: int) -> dict[str, str]:
    """The environment of a cell process started in one of ``slots`` parallel slots.

    With GPUs the slot is a GPU index (``CUDA_VISIBLE_DEVICES``). On a CPU-only machine the slots share the
    cores: each process gets ``cores // slots`` threads (``OMP_NUM_THREADS``) unless the user set it.
    """
    env = dict(os.environ)
    if cuda_devices:
        env["CUDA_VISIBLE_DEVICES"] = str(slot)
    elif "OMP_NUM_THREADS" not in env:
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // slots))
    return env


def _run_subprocess(run: GridRun, cell: Cell, env: dict[str, str]) -> dict[str, Any]:
    """Runs a cell in a fresh Python process with ``env`` (e.g. pinned to one GPU); returns its row."""
    work = run.dir / "cells" / run.error_log(cell).stem
    work.mkdir(parents=True, exist_ok=True)
    spec, result = work / "spec.json", work / "result.json"
    result.unlink(missing_ok=True)
    write_spec(cell, run.cell_dir(cell), spec)
    with open(work / "output.log", "w") as output:
        code = subprocess.call(
            [sys.executable, "-m", "adbench.benchmark.cell", str(spec), str(result)],
            env=env, stdout=output, stderr=subprocess.STDOUT,
        )  # fmt: skip
    if code == 0 and result.is_file():
        return {**json.loads(result.read_text()), "status": "ok", "error": ""}
    tail = (work / "output.log").read_text()[-4000:]
    return _failure_row(cell, f"cell process exited with {code}\n{tail}", run.error_log(cell))


def _run_in_slots(
    run: GridRun, cells: list[Cell], slots: int, cuda_devices: int, announce: Callable[[Cell], None]
) -> None:
    """Runs ``slots`` cell processes at a time: one per GPU, or sharing the cores of a CPU-only machine."""
    free = list(range(slots))
    lock = threading.Lock()

    def work(cell: Cell) -> None:
        with lock:
            slot = free.pop()
        try:
            announce(cell)
            run.record(cell, _run_subprocess(run, cell, cell_environment(slot, slots, cuda_devices)))
        finally:
            with lock:
                free.append(slot)

    with ThreadPoolExecutor(max_workers=slots) as pool:
        list(pool.map(work, cells))


def _run_submitit(
    run: GridRun, cells: list[Cell], slurm: dict[str, Any], announce: Callable[[Cell], None]
) -> None:
    try:
        import submitit
    except ImportError:
        from adbench.errors import ConfigError

        raise ConfigError(
            "--launcher submitit needs the submitit package: pip install 'adbench[slurm]'"
        ) from None
    executor = submitit.AutoExecutor(folder=str(run.dir / "slurm"), cluster=slurm.pop("cluster", None))
    executor.update_parameters(**slurm)
    jobs = []
    for cell in cells:
        announce(cell)
        jobs.append((cell, executor.submit(run_cell, cell, run.cell_dir(cell))))
    for cell, job in jobs:
        try:
            row = {**job.result(), "status": "ok", "error": ""}
        except Exception as error:  # noqa: BLE001 - a failing job is recorded and the grid goes on
            row = _failure_row(cell, error, run.error_log(cell))
        run.record(cell, row)


def run_grid(
    grid: Grid, launcher: str = "auto", gpus: int | None = None, slurm: dict[str, Any] | None = None
) -> pd.DataFrame:
    """Runs every unfinished cell of ``grid``.

    Args:
        grid: the benchmark.
        launcher: ``auto`` (one process per GPU when several GPUs are visible, else in-process),
            ``inprocess``, ``processes`` (one process per GPU) or ``submitit`` (each cell a SLURM job).
        gpus: how many cells ``processes`` runs at once: one per GPU (default: all visible GPUs); on a
            CPU-only machine, that many processes share the cores.
        slurm: submitit executor parameters (e.g. ``slurm_partition``, ``timeout_min``, ``gpus_per_node``;
            ``cluster: local`` runs the jobs as local processes).

    Returns:
        All rows of runs.csv.
    """
    run = GridRun(grid)
    cells = run.pending()
    total = len(grid.cells)
    numbers = {c.key: i for i, c in enumerate(grid.cells, start=1)}

    def announce(cell: Cell) -> None:  # one write per line: cells in parallel slots announce concurrently
        line = f"[{numbers[cell.key]}/{total}] {cell.config} category={cell.category} seed={cell.seed}\n"
        sys.stdout.write(line)
        sys.stdout.flush()

    if not cells:
        print(f"all {total} cells of {grid.name} are done; delete {run.runs_path} to run them again")
        return run.frame()
    os.environ["WANDB_RUN_GROUP"] = grid.name
    if launcher == "auto":
        import torch

        visible = torch.cuda.device_count()
        launcher, gpus = ("processes", gpus or visible) if visible > 1 else ("inprocess", gpus)
    if launcher == "inprocess":
        _run_in_process(run, cells, announce)
    elif launcher == "processes":
        import torch

        visible = torch.cuda.device_count()
        _run_in_slots(run, cells, max(1, gpus or visible or 1), visible, announce)
    elif launcher == "submitit":
        _run_submitit(run, cells, dict(slurm or {}), announce)
    else:
        raise ValueError(f"unknown launcher {launcher!r}")
    return run.frame()
