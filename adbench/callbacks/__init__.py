"""Callbacks every run shares: metrics, anomaly-map images, timing, resumable random state, preflight checks."""

from adbench.callbacks.metrics import AnomalyMetrics
from adbench.callbacks.preflight import Preflight
from adbench.callbacks.rng_state import RandomState
from adbench.callbacks.timing import Timing
from adbench.callbacks.visualization import Visualizer

__all__ = ["AnomalyMetrics", "Preflight", "RandomState", "Timing", "Visualizer"]
