"""A benchmark grid: which configs run on which categories with which seeds."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from adbench.errors import ConfigError


@dataclass(frozen=True)
class Cell:
    """One cell of the grid: fit every stage in order, then test the last one.

    Attributes:
        stages: YAML configs fitted in order; each later stage starts from the previous stage's final
            weights through ``--model.init_args.init_from`` (DSR's stages, ADTR then ADTR+).
        category: value of ``--data.init_args.category``.
        seed: value of ``--seed_everything``.
        args: extra command-line overrides applied to every stage of this cell.
        label: the run's name in runs.csv and the summary tables (its ``variant`` column); empty: the
            model's name. Runs that share a config but differ in ``args`` need distinct labels.
    """

    stages: tuple[str, ...]
    category: str
    seed: int
    args: tuple[str, ...] = ()
    label: str = ""

    @property
    def config(self) -> str:
        """The cell's stages joined with '+'."""
        return "+".join(self.stages)

    @property
    def key(self) -> str:
        return f"{self.label or self.config}|{self.category}|{self.seed}"


@dataclass
class Grid:
    """A parsed benchmark file.

    Attributes:
        name: benchmark name; results go to ``<output_dir>/<name>`` and W&B runs share this group.
        output_dir: parent folder of the results.
        cells: the runs, in order.
    """

    name: str
    output_dir: Path
    cells: list[Cell] = field(default_factory=list)

    @property
    def results_dir(self) -> Path:
        return self.output_dir / self.name


def _stages(run: dict, path: Path) -> tuple[str, ...]:
    config = run.get("config")
    stages = tuple(config) if isinstance(config, list) else (config,)
    for stage in stages:
        if not stage or not Path(stage).is_file():
            raise ConfigError(f"{path}: run config {stage!r} does not exist")
    return stages


def load_grid(path: str | Path) -> Grid:
    """Reads a benchmark YAML file.

    Format::

        name: demo
        output_dir: results/benchmarks
        seeds: [0]
        runs:
          - config: configs/adtr_demo.yaml          # or a list of stage configs, fitted in order
            categories: [brick, grass]
            args: ["--trainer.max_epochs=40"]      # overrides for every cell of this run
            category_args:                         # per-category overrides
              grass: ["--data.init_args.image_size=320"]
            label: adtr-long                       # optional; required to tell apart runs of one config
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"benchmark config {path} does not exist")
    spec = yaml.safe_load(path.read_text()) or {}
    unknown = set(spec) - {"name", "output_dir", "seeds", "runs"}
    if unknown:
        raise ConfigError(f"{path}: unknown keys {sorted(unknown)}; expected name, output_dir, seeds, runs")
    if not spec.get("runs"):
        raise ConfigError(f"{path}: `runs` is empty; list at least one config with its categories")
    seeds = [int(s) for s in spec.get("seeds", [0])]
    grid = Grid(
        name=str(spec.get("name", path.stem)), output_dir=Path(spec.get("output_dir", "results/benchmarks"))
    )
    for run in spec["runs"]:
        unknown = set(run) - {"config", "categories", "args", "category_args", "label"}
        if unknown:
            raise ConfigError(
                f"{path}: unknown run keys {sorted(unknown)}; expected config, categories, args, "
                "category_args, label"
            )
        stages = _stages(run, path)
        categories = run.get("categories")
        if not categories:
            raise ConfigError(f"{path}: run {stages[0]} lists no categories")
        per_category = run.get("category_args") or {}
        for seed in seeds:
            for category in categories:
                args = tuple(str(a) for a in [*run.get("args", []), *per_category.get(category, [])])
                grid.cells.append(Cell(stages, str(category), seed, args, str(run.get("label") or "")))
    keys = [cell.key for cell in grid.cells]
    repeated = sorted({key for key in keys if keys.count(key) > 1})
    if repeated:
        raise ConfigError(
            f"{path}: runs {repeated} appear twice; give runs of the same config distinct `label`s"
        )
    return grid
