"""The benchmark's result files: runs.csv (one row per cell) and summary.md (tables per metric)."""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd

from adbench.benchmark.paper_numbers import PAPER_NUMBERS
from adbench.io import atomic_write_text

RUN_COLUMNS = [
    "model", "dataset", "category", "seed", "image_AUROC", "pixel_AUROC", "pixel_AUPRO", "image_F1max",
    "pixel_AP", "train_s", "infer_ms_per_image", "peak_mem_MB", "status", "config", "run_dir", "error",
    "label", "variant", "stage_train_s",
]  # fmt: skip
SUMMARY_METRICS = ["image_AUROC", "pixel_AUROC", "pixel_AUPRO", "image_F1max", "pixel_AP"]
PAPER_SUFFIX = " (paper)"


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


def _paper_column(model: str, metric: str, index: pd.MultiIndex) -> pd.Series | None:
    """Paper values for the table's (dataset, category) rows; the mean row is the mean over the same
    categories when the paper reports all of them, else the paper's own overall mean."""
    values = {}
    for dataset, category in index:
        reported = PAPER_NUMBERS.get((model, dataset, metric), {})
        values[(dataset, category)] = reported.get(category)
    if all(v is None for v in values.values()) and not any(
        PAPER_NUMBERS.get((model, d, metric)) for d, _ in index
    ):
        return None
    column = pd.Series(values, dtype=float)
    column.index = pd.MultiIndex.from_tuples(column.index)
    if column.notna().all():
        mean = column.mean()
    else:
        datasets = {d for d, _ in index}
        means = [PAPER_NUMBERS.get((model, d, metric), {}).get("mean") for d in datasets]
        mean = means[0] if len(means) == 1 else None
    column.loc[("", "mean")] = mean if mean is not None else float("nan")
    return column


def variant_names(frame: pd.DataFrame) -> pd.Series:
    """Each row's name in tables and plots: the run's label when it has one, else the model's name."""
    names = frame["variant"] if "variant" in frame else pd.Series(float("nan"), index=frame.index)
    return names.where(names.notna() & (names.astype(str) != ""), frame["model"])


def summary_tables(frame: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Per metric: (dataset, category) x variants (the model, or the run's label), mean over seeds, a mean
    row, and paper columns beside the models the papers report."""
    done = frame[frame["status"] == "ok"].copy()
    done["variant"] = variant_names(done)
    model_of = dict(zip(done["variant"], done["model"], strict=True))
    tables = {}
    for metric in SUMMARY_METRICS:
        if done.empty or done[metric].isna().all():
            continue
        table = done.pivot_table(
            index=["dataset", "category"], columns="variant", values=metric, aggfunc="mean"
        )
        rows = table.index
        table.loc[("", "mean"), :] = table.mean(axis=0)
        columns = {}
        papers_shown = set()
        for name in table.columns:
            columns[name] = table[name]
            model = str(model_of[name])
            paper = _paper_column(model, metric, rows) if model not in papers_shown else None
            if paper is not None:
                papers_shown.add(model)
                columns[f"{model}{PAPER_SUFFIX}"] = paper.reindex(table.index)
        tables[metric] = pd.DataFrame(columns)
    return tables


def markdown_table(table: pd.DataFrame) -> str:
    """A pandas table as GitHub markdown (values x100, one decimal; empty where unknown)."""
    header = ["dataset", "category", *[str(c) for c in table.columns]]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for (dataset, category), row in table.iterrows():
        cells = ["" if pd.isna(v) else f"{100 * v:.1f}" for v in row.to_numpy()]
        lines.append("| " + " | ".join([str(dataset), str(category), *cells]) + " |")
    return "\n".join(lines)


def write_summary(frame: pd.DataFrame, path: Path, title: str) -> str:
    """Writes summary.md atomically and returns its text."""
    parts = [
        f"# {title}",
        "",
        "Values in %, mean over seeds; `(paper)` columns are the papers' own numbers.",
        "",
    ]
    for metric, table in summary_tables(frame).items():
        parts += [f"## {metric}", "", markdown_table(table), ""]
    done = frame[frame["status"] == "ok"]
    if not done.empty:
        speed = done.groupby("model")[["train_s", "infer_ms_per_image", "peak_mem_MB"]].mean().round(1)
        parts += [
            "## Cost (mean per cell)",
            "",
            "| model | train_s | infer_ms_per_image | peak_mem_MB |",
            "|---|---|---|---|",
        ]
        parts += [
            f"| {m} | {r.train_s} | {r.infer_ms_per_image} | {r.peak_mem_MB} |" for m, r in speed.iterrows()
        ]
        parts.append("")
    failed = frame[frame["status"] != "ok"]
    if not failed.empty:
        parts += ["## Failed cells", ""]
        parts += [f"- {r.config} {r.category} seed {r.seed}: {r.error}" for r in failed.itertuples()]
    text = "\n".join(parts) + "\n"
    atomic_write_text(path, text)
    return text
