"""adbench: train, evaluate and compare visual anomaly detectors on one footing."""

__version__ = "0.1.0"
