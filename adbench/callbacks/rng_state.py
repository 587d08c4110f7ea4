"""Saving and restoring the global random states with checkpoints, so a resumed fit continues exactly."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch
from lightning import Callback


class RandomState(Callback):
    """Stores Python's, NumPy's and torch's (CPU and CUDA) random states in every checkpoint and restores
    them when a fit resumes, so dropout and on-the-fly synthetic anomalies continue as they would have."""

    def state_dict(self) -> dict[str, Any]:
        kind, keys, position, has_gauss, cached = np.random.get_state()
        state = {
            "python": random.getstate(),
            # Plain types and tensors only, so checkpoints load with torch.load(weights_only=True).
            "numpy": [
                kind,
                torch.from_numpy(keys.astype(np.int64)),
                int(position),
                int(has_gauss),
                float(cached),
            ],
            "torch": torch.get_rng_state(),
        }
        if torch.cuda.is_available():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if "python" in state_dict:
            random.setstate(state_dict["python"])
        if "numpy" in state_dict:
            kind, keys, position, has_gauss, cached = state_dict["numpy"]
            np.random.set_state((kind, keys.numpy().astype(np.uint32), position, has_gauss, cached))
        if "torch" in state_dict:
            torch.set_rng_state(state_dict["torch"])
        if "cuda" in state_dict and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state_dict["cuda"])
