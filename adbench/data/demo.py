"""The embedded demo set: real photographs with synthetic defects, built offline on first use."""

from __future__ import annotations

from pathlib import Path

from adbench.data.demo_build import DEMO_CATEGORIES, build_demo
from adbench.data.mvtec import MVTecAD


class Demo(MVTecAD):
    """A small MVTec-layout dataset built deterministically from photographs that installed packages ship.

    Built (about a minute) on first use and cached under ``root``; ``adbench data demo`` builds it ahead.

    Args:
        root: where the demo set is built and cached.
        category: one of the demo categories.
        data_seed: seed of the demo set itself (another seed gives another set).
    """

    dataset_name = "demo"
    categories = DEMO_CATEGORIES

    def __init__(self, *args, root: str | Path = "./datasets/demo", data_seed: int = 0, **kwargs) -> None:
        self.data_seed = data_seed
        super().__init__(*args, root=root, **kwargs)

    def download_hint(self) -> str:
        return "build it with `adbench data demo`"

    def prepare_data(self) -> None:
        build_demo(self.root, seed=self.data_seed)

    def setup(self, stage: str | None = None) -> None:
        if not self._datasets:
            self.prepare_data()
        super().setup(stage)
