"""A benchmark grid: which configs run on which categories with which seeds."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from adbench.errors import ConfigError


@dataclass(frozen=True)
class Cell:
    """One fit + test run of the grid.

    Attributes:
        config: the run's YAML config (model, data, trainer).
        category: value of ``--data.init_args.category``.
        seed: value of ``--seed_everything``.
        args: extra command-line overrides of this cell.
    """

    config: str
    category: str
    seed: int
    args: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        return f"{Path(self.config).stem}|{self.category}|{self.seed}"


@dataclass
class Grid:
    """A parsed benchmark file.

    Attributes:
        name: benchmark name; results go to ``<output_dir>/<name>``.
        output_dir: parent folder of the results.
        cells: the runs, in order.
    """

    name: str
    output_dir: Path
    cells: list[Cell] = field(default_factory=list)

    @property
    def results_dir(self) -> Path:
        return self.output_dir / self.name


def load_grid(path: str | Path) -> Grid:
    """Reads a benchmark YAML file.

    Format::

        name: demo
        output_dir: results/benchmarks
        seeds: [0]
        runs:
          - config: configs/adtr_demo.yaml
            categories: [brick, grass]
            args: ["--trainer.max_epochs=40"]
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
    grid = Grid(name=str(spec.get("name", path.stem)), output_dir=Path(spec.get("output_dir", "results/benchmarks")))
    for run in spec["runs"]:
        config = run.get("config")
        if not config or not Path(config).is_file():
            raise ConfigError(f"{path}: run config {config!r} does not exist")
        categories = run.get("categories")
        if not categories:
            raise ConfigError(f"{path}: run {config} lists no categories")
        args = tuple(str(a) for a in run.get("args", []))
        grid.cells += [Cell(config, str(c), s, args) for s in seeds for c in categories]
    return grid
