"""The benchmark's result files: runs.csv (one row per cell) and summary.md (tables per metric)."""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd

from adbench.io import atomic_write_text

RUN_COLUMNS = [
    "model", "dataset", "category", "seed", "image_AUROC", "pixel_AUROC", "pixel_AUPRO", "image_F1max",
    "pixel_AP", "train_s", "infer_ms_per_image", "peak_mem_MB", "status", "config", "run_dir", "error",
]  # fmt: skip
SUMMARY_METRICS = ["image_AUROC", "pixel_AUROC", "pixel_AUPRO", "image_F1max", "pixel_AP"]


def read_runs(path: Path) -> pd.DataFrame:
    """Reads runs.csv (an empty table with the contract's columns when absent)."""
    if not path.is_file():
        return pd.DataFrame(columns=RUN_COLUMNS)
    return pd.read_csv(path)


def write_runs(frame: pd.DataFrame, path: Path) -> None:
    """Writes runs.csv atomically, contract columns first."""
    ordered = frame.reindex(columns=RUN_COLUMNS + [c for c in frame.columns if c not in RUN_COLUMNS])
    buffer = io.StringIO()
    ordered.to_csv(buffer, index=False)
    atomic_write_text(path, buffer.getvalue())


def summary_tables(frame: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Per metric: categories x models (mean over seeds) with a mean row."""
    done = frame[frame["status"] == "ok"]
    tables = {}
    for metric in SUMMARY_METRICS:
        if done.empty or done[metric].isna().all():
            continue
        table = done.pivot_table(index=["dataset", "category"], columns="model", values=metric, aggfunc="mean")
        table.loc[("", "mean"), :] = table.mean(axis=0)
        tables[metric] = table
    return tables


def markdown_table(table: pd.DataFrame) -> str:
    """A pandas table as GitHub markdown (values x100, one decimal) without extra dependencies."""
    header = ["dataset", "category", *[str(c) for c in table.columns]]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for (dataset, category), row in table.iterrows():
        cells = ["" if pd.isna(v) else f"{100 * v:.1f}" for v in row.to_numpy()]
        lines.append("| " + " | ".join([str(dataset), str(category), *cells]) + " |")
    return "\n".join(lines)


def write_summary(frame: pd.DataFrame, path: Path, title: str) -> str:
    """Writes summary.md atomically and returns its text."""
    parts = [f"# {title}", ""]
    for metric, table in summary_tables(frame).items():
        parts += [f"## {metric} (%)", "", markdown_table(table), ""]
    failed = frame[frame["status"] != "ok"]
    if not failed.empty:
        parts += ["## Failed cells", ""] + [f"- {r.config} {r.category} seed {r.seed}: {r.error}" for r in failed.itertuples()]
    text = "\n".join(parts) + "\n"
    atomic_write_text(path, text)
    return text
