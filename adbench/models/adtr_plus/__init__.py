"""ADTR+: ADTR trained with anomalies (synthetic confetti or labelled), from a normal-only ADTR checkpoint."""

from adbench.models.adtr_plus.lightning_module import ADTRPlus

__all__ = ["ADTRPlus"]
