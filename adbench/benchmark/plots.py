"""Benchmark plots: per-category bars per model, and a metric vs inference-speed scatter."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from adbench.benchmark.results import PAPER_SUFFIX, summary_tables, variant_names


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_category_bars(frame: pd.DataFrame, folder: Path) -> list[Path]:
    """One PNG per metric: grouped bars, categories on x, one bar per model (paper columns hatched)."""
    plt = _pyplot()
    written = []
    for metric, table in summary_tables(frame).items():
        several_datasets = len({d for d, _ in table.index if d}) > 1
        labels = [f"{d}/{c}" if several_datasets and d else c for d, c in table.index]
        fig, axis = plt.subplots(figsize=(max(6.0, 0.7 * len(table) * max(1, len(table.columns)) ** 0.5), 4))
        width = 0.8 / max(1, len(table.columns))
        for i, column in enumerate(table.columns):
            positions = [x + (i - (len(table.columns) - 1) / 2) * width for x in range(len(table))]
            hatch = "//" if str(column).endswith(PAPER_SUFFIX) else None
            axis.bar(
                positions, 100 * table[column].to_numpy(dtype=float), width, label=str(column), hatch=hatch
            )
        axis.set_xticks(range(len(table)), labels, rotation=45, ha="right")
        axis.set_ylabel(f"{metric} (%)")
        axis.set_ylim(0, 100)
        # above the axes (in the title's place: the y label names the metric), so no bar hides under it
        axis.legend(
            fontsize="small",
            ncols=min(4, len(table.columns)),
            loc="lower center",
            bbox_to_anchor=(0.5, 1.0),
            frameon=False,
        )
        fig.tight_layout()
        path = folder / f"bars_{metric}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written


def plot_speed_scatter(frame: pd.DataFrame, folder: Path, metric: str = "image_AUROC") -> Path | None:
    """Mean ``metric`` vs mean inference ms per image, one point per variant (model or run label)."""
    done = frame[(frame["status"] == "ok") & frame[metric].notna()]
    if done.empty:
        return None
    plt = _pyplot()
    means = done.groupby(variant_names(done))[[metric, "infer_ms_per_image"]].mean()
    fig, axis = plt.subplots(figsize=(5, 4))
    for model, row in means.iterrows():
        axis.scatter(row["infer_ms_per_image"], 100 * row[metric], s=50)
        axis.annotate(
            str(model),
            (row["infer_ms_per_image"], 100 * row[metric]),
            textcoords="offset points",
            xytext=(5, 5),
        )
    axis.set_xscale("log")
    axis.set_xlabel("inference ms per image (log)")
    axis.set_ylabel(f"mean {metric} (%)")
    axis.set_title(f"{metric} vs speed")
    fig.tight_layout()
    path = folder / f"speed_vs_{metric}.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
