"""Callbacks every run shares: metrics, anomaly-map images, timing."""

from adbench.callbacks.metrics import AnomalyMetrics
from adbench.callbacks.timing import Timing
from adbench.callbacks.visualization import Visualizer

__all__ = ["AnomalyMetrics", "Timing", "Visualizer"]
