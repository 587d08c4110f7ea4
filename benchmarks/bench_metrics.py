"""Times every metric of ``adbench.metrics`` on a synthetic test split (``make bench-metrics``).

Default split: 500 anomaly maps of 256 x 256, half of them anomalous with a few hundred elliptic defect
regions in all; maps are noisy float32 scores that overlap the defects only partly. Runs on CPU, and on
CUDA too when available.

Usage: ``python benchmarks/bench_metrics.py [--n 500] [--size 256] [--repeats 2] [--bins 1000]``
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
import torch

from adbench.metrics import (
    aupro,
    average_precision,
    compute_all,
    f1_max,
    image_auroc,
    pixel_auroc,
    pixel_average_precision,
)


def make_split(n: int, size: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Synthetic split.

    Returns:
        scores (n,) float32, labels (n,) long, maps (n, 1, size, size) float32, masks same shape float32.
    """
    rng = np.random.default_rng(seed)
    masks = np.zeros((n, size, size), dtype=bool)
    maps = rng.normal(0.0, 1.0, size=(n, size, size)).astype(np.float32)
    yy, xx = np.mgrid[:size, :size].astype(np.float32)
    labels = np.zeros(n, dtype=np.int64)
    labels[: n // 2] = 1
    for i in np.flatnonzero(labels):
        for _ in range(rng.integers(1, 3)):
            cy, cx = rng.uniform(0, size, 2)
            ry, rx = rng.uniform(2, size / 8, 2)
            region = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
            masks[i] |= region
            strength = rng.uniform(0.5, 3.0)
            maps[i] += strength * np.exp(-(((yy - cy) / (2 * ry)) ** 2 + ((xx - cx) / (2 * rx)) ** 2))
    scores = maps.reshape(n, -1).max(1) + rng.normal(0, 0.5, n).astype(np.float32)
    return (
        torch.from_numpy(scores),
        torch.from_numpy(labels),
        torch.from_numpy(maps[:, None]),
        torch.from_numpy(masks[:, None].astype(np.float32)),
    )


def timed(fn: Callable[[], float], device: torch.device, repeats: int) -> tuple[float, float, float]:
    """Best wall time and best process CPU time over ``repeats`` runs (CUDA synchronized), and the value.

    The CPU time (all threads of this process) bounds the wall time an idle machine would show; it is the
    figure to read when other jobs share the cores.
    """
    best, best_cpu, value = float("inf"), float("inf"), float("nan")
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start, start_cpu = time.perf_counter(), time.process_time()
        value = fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        best = min(best, time.perf_counter() - start)
        best_cpu = min(best_cpu, time.process_time() - start_cpu)
    return best, best_cpu, value


def metric_cases(
    s: torch.Tensor, y: torch.Tensor, m: torch.Tensor, g: torch.Tensor, bins: int
) -> list[tuple[str, Callable[[], float]]]:
    """(label, call) of every timed metric on image scores s, labels y, maps m and masks g."""
    return [
        ("image_auroc", lambda: image_auroc(s, y)),
        ("f1_max", lambda: f1_max(s, y)),
        ("average_precision", lambda: average_precision(s, y)),
        ("pixel_auroc", lambda: pixel_auroc(m, g)),
        ("pixel_average_precision", lambda: pixel_average_precision(m, g)),
        ("aupro (fpr_limit=0.3)", lambda: aupro(m, g)),
        (f"pixel_auroc binned={bins}", lambda: pixel_auroc(m, g, binned=bins)),
        (f"aupro binned={bins}", lambda: aupro(m, g, binned=bins)),
        ("compute_all", lambda: compute_all(s, y, m, g)["pixel_AUPRO"]),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=500, help="number of maps")
    parser.add_argument("--size", type=int, default=256, help="map height and width")
    parser.add_argument("--repeats", type=int, default=2, help="runs per metric (best time is shown)")
    parser.add_argument("--bins", type=int, default=1000, help="thresholds of the binned mode")
    args = parser.parse_args()

    scores, labels, maps, masks = make_split(args.n, args.size)
    from scipy import ndimage

    structure = np.zeros((3, 3, 3), dtype=bool)
    structure[1] = True
    n_regions = ndimage.label(masks[:, 0].numpy() > 0, structure=structure)[1]
    print(
        f"{args.n} maps of {args.size}x{args.size}: {maps.numel() / 1e6:.1f}M pixels, "
        f"{int(masks.sum())} defect pixels in {n_regions} regions, {int(labels.sum())} anomalous images; "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads"
    )
    devices = [torch.device("cpu")]
    if torch.cuda.is_available():
        devices.append(torch.device("cuda"))
    for device in devices:
        s, y, m, g = (t.to(device) for t in (scores, labels, maps, masks))
        cases = metric_cases(s, y, m, g, args.bins)
        name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
        print(f"\n{name}:")
        print(f"  {'metric':<28s} {'wall s':>8s} {'cpu s':>8s}   value")
        for label, fn in cases:
            seconds, cpu_seconds, value = timed(fn, device, args.repeats)
            print(f"  {label:<28s} {seconds:8.3f} {cpu_seconds:8.3f}   {value:.6f}")


if __name__ == "__main__":
    main()
