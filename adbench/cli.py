"""The ``adbench`` command: LightningCLI (fit / validate / test / predict) plus ``data`` and ``benchmark``."""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from adbench.errors import AdbenchError

DESCRIPTION = """adbench: train, evaluate and compare visual anomaly detectors on one footing.

Lightning subcommands (options: `adbench <subcommand> --help`):
  fit / validate / test / predict   with --model (any AnomalyModule), --data (any datamodule),
                                    --trainer options and --config FILE.yaml (see configs/).
More commands:
  adbench data demo [--root DIR]              build the offline demo set (real photographs + defects)
  adbench data download mvtec|mvtec3d --root DIR
                                              download an official archive, verify its checksum, extract
  adbench benchmark --config configs/X.yaml   run a grid of models x datasets x categories (fit + test)

Example: adbench fit --config configs/adtr_demo.yaml --data.init_args.category brick
"""


def _environment_defaults() -> None:
    """Quiet, offline-safe defaults: W&B offline without credentials; no albumentations update check."""
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    from adbench.loggers import wandb_has_credentials

    if not wandb_has_credentials():
        os.environ.setdefault("WANDB_MODE", "offline")


def _import_attr(class_path: str) -> Any:
    module, _, name = class_path.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        return None


def run_names(config: Any) -> dict[str, str]:
    """Model, dataset and category of a parsed subcommand config (for loggers and result tables)."""
    model_cls = _import_attr(config.model.class_path) if config.get("model") else None
    data_cls = _import_attr(config.data.class_path) if config.get("data") else None
    data_args = config.data.init_args if config.get("data") else {}
    dataset = data_args.get("name") or getattr(data_cls, "dataset_name", "dataset")
    return {
        "model": getattr(model_cls, "model_name", "model"),
        "dataset": str(dataset),
        "category": str(data_args.get("category", "all")),
    }


def name_loggers(config: Any, subcommand: str) -> None:
    """Fills empty logger names from model, dataset and category, so runs line up in dashboards."""
    loggers = config.trainer.get("logger")
    if not loggers or isinstance(loggers, bool):
        return
    names = run_names(config)
    for logger in loggers if isinstance(loggers, list) else [loggers]:
        class_path = logger.get("class_path", "")
        args = logger.init_args
        if class_path.endswith("WandbLogger"):
            if not args.get("name"):
                args.name = f"{names['model']}-{names['dataset']}-{names['category']}"
            if args.get("group") is None:
                # A benchmark sets WANDB_RUN_GROUP so all of its cells share one group.
                args.group = os.environ.get("WANDB_RUN_GROUP") or names["dataset"]
            tags = list(args.get("tags") or [])
            args.tags = tags + [v for v in (*names.values(), subcommand) if v not in tags]
            if args.get("job_type") is None:
                args.job_type = subcommand
        elif class_path.endswith(("CSVLogger", "TensorBoardLogger")):
            if args.get("name") in (None, "lightning_logs"):
                args.name = f"{names['model']}/{names['dataset']}/{names['category']}"
            if config.get("ckpt_path") == "last" and args.get("version") is None:
                # `--ckpt_path last` continues the latest run of this model/dataset/category in its own folder.
                args.version = latest_version_with_checkpoint(Path(args.get("save_dir") or "."), args.name)


def latest_version_with_checkpoint(save_dir: Path, name: str) -> int | None:
    """The newest ``version_N`` under ``save_dir/name`` that holds ``checkpoints/last.ckpt``, or None."""
    found = [
        (path.stat().st_mtime, int(path.parents[1].name.removeprefix("version_")))
        for path in (save_dir / name).glob("version_*/checkpoints/last.ckpt")
        if path.parents[1].name.removeprefix("version_").isdigit()
    ]
    return max(found)[1] if found else None


def build_cli_class():
    """The LightningCLI subclass (built lazily so ``adbench data`` does not import Lightning)."""
    from argparse import RawDescriptionHelpFormatter

    from jsonargparse import DefaultHelpFormatter
    from lightning.pytorch.cli import LightningCLI, SaveConfigCallback
    from lightning.pytorch.loggers import WandbLogger

    from adbench.data.base import AnomalyDataModule
    from adbench.models.base import AnomalyModule

    class LoggingSaveConfig(SaveConfigCallback):
        """Saves config.yaml in the log dir and attaches the full config to W&B runs."""

        def save_config(self, trainer, pl_module, stage: str) -> None:
            for logger in trainer.loggers:
                if isinstance(logger, WandbLogger):
                    logger.experiment.config.update(self.config.as_dict(), allow_val_change=True)

    class HelpFormatter(RawDescriptionHelpFormatter, DefaultHelpFormatter):
        """Keeps the description's line breaks."""

    class AdbenchCLI(LightningCLI):
        """LightningCLI whose --model is any AnomalyModule and --data any AnomalyDataModule."""

        def __init__(self, args: Sequence[str] | None = None, run: bool = True, **kwargs: Any) -> None:
            super().__init__(
                model_class=AnomalyModule,
                datamodule_class=AnomalyDataModule,
                subclass_mode_model=True,
                subclass_mode_data=True,
                save_config_callback=LoggingSaveConfig,
                save_config_kwargs={"overwrite": True},
                parser_kwargs={"description": DESCRIPTION, "formatter_class": HelpFormatter},
                trainer_defaults={"default_root_dir": "results"},
                auto_configure_optimizers=False,
                args=args,
                run=run,
                **kwargs,
            )

        def before_instantiate_classes(self) -> None:
            config = self.config[self.subcommand] if self.subcommand else self.config
            name_loggers(config, self.subcommand or "run")

    return AdbenchCLI


def _clean_message(error: BaseException) -> str:
    """The last line of an error message (DataLoader workers prepend their traceback)."""
    lines = [line for line in str(error).strip().splitlines() if line.strip()]
    last = lines[-1] if lines else type(error).__name__
    for prefix in ("adbench.errors.", "adbench.models.base."):
        if last.startswith(prefix):
            last = last.split(": ", 1)[-1]
    return last


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``adbench`` console script."""
    from_command_line = argv is None
    argv = list(sys.argv[1:] if argv is None else argv)
    _environment_defaults()
    try:
        if argv and argv[0] == "data":
            from adbench.data.commands import data_main

            return data_main(argv[1:])
        if argv and argv[0] == "benchmark":
            from adbench.benchmark.commands import benchmark_main

            return benchmark_main(argv[1:])
        build_cli_class()(args=None if from_command_line else argv)
    except Exception as error:
        cause = _user_error(error)
        if cause is None:
            raise
        print(f"adbench: error: {_clean_message(cause)}", file=sys.stderr)
        return 2
    return 0


def _user_error(error: BaseException) -> BaseException | None:
    """The AdbenchError behind ``error``: itself, one in its cause/context chain (jsonargparse wraps errors
    raised while instantiating classes), or a DataLoader worker's re-raised copy (its text names the class).
    """
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, AdbenchError) or "adbench.errors." in str(current):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


if __name__ == "__main__":
    sys.exit(main())
