"""Callbacks the reliability tests put into real runs (importable by the subprocesses they start)."""

from __future__ import annotations

import os
import signal

from lightning import Callback


class KillAtStep(Callback):
    """SIGKILLs the process when training reaches ``step`` (mid-epoch: no cleanup, no checkpoint).

    Args:
        step: global step at whose start the process dies.
    """

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGKILL)
