"""Two-process DDP (gloo, CPU): the Metric classes give exactly the single-process values.

A DistributedSampler over 7 samples with 2 replicas pads rank 1 with a repeat of sample 0, so the padding
duplicate must be dropped by index for the results to match.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.utils.data import DistributedSampler

from adbench.metrics import (
    ImageAUROC,
    ImageAveragePrecision,
    ImageF1Max,
    PixelAUPRO,
    PixelAUROC,
    PixelAveragePrecision,
    aupro,
    average_precision,
    f1_max,
    image_auroc,
    pixel_auroc,
    pixel_average_precision,
)

N_SAMPLES = 7


def _data() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """7 samples: scores (7,), labels (7,), maps (7, 1, 12, 10) with ties, masks (7, 1, 12, 10)."""
    gen = torch.Generator().manual_seed(0)
    masks = torch.zeros(N_SAMPLES, 1, 12, 10)
    for i in range(N_SAMPLES):
        if i % 3 != 2:
            y, x = torch.randint(0, 9, (2,), generator=gen).tolist()
            masks[i, 0, y : y + 3, x : x + 2] = 1
            masks[i, 0, 11 - y, 9 - x] = 1
    maps = torch.round(torch.randn(masks.shape, generator=gen) * 4 + 3 * masks) / 4
    scores = maps.amax(dim=(1, 2, 3)) + torch.randn(N_SAMPLES, generator=gen)
    labels = (masks.amax(dim=(1, 2, 3)) > 0).long()
    labels[0] = 0  # sample 0, the padding duplicate, is a normal image with a defect-free score
    return scores, labels, maps, masks


def _metrics() -> dict[str, torch.nn.Module]:
    return {
        "image_AUROC": ImageAUROC(),
        "image_F1max": ImageF1Max(),
        "image_AP": ImageAveragePrecision(),
        "pixel_AUROC": PixelAUROC(),
        "pixel_AP": PixelAveragePrecision(),
        "pixel_AUPRO": PixelAUPRO(fpr_limit=0.3),
    }


def _run_metrics(ids: list[int], batch_size: int = 2) -> dict[str, float]:
    scores, labels, maps, masks = _data()
    metrics = _metrics()
    for start in range(0, len(ids), batch_size):
        idx = torch.tensor(ids[start : start + batch_size])
        for name, metric in metrics.items():
            if name.startswith("image"):
                metric.update(scores[idx], labels[idx], idx)
            else:
                metric.update(maps[idx], masks[idx], idx)
    return {name: float(metric.compute()) for name, metric in metrics.items()}


def _worker(rank: int, init_file: str, out_file: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        sampler = DistributedSampler(range(N_SAMPLES), num_replicas=2, rank=rank, shuffle=False)
        ids = list(sampler)
        results = _run_metrics(ids)
        results["ids"] = ids
        gathered: list[dict] = [{}, {}]
        dist.all_gather_object(gathered, results)
        if rank == 0:
            Path(out_file).write_text(json.dumps(gathered))
    finally:
        dist.destroy_process_group()


def test_ddp_equals_single_process(tmp_path: Path) -> None:
    out_file = tmp_path / "results.json"
    mp.spawn(_worker, args=(str(tmp_path / "init"), str(out_file)), nprocs=2, join=True)
    per_rank = json.loads(out_file.read_text())
    assert per_rank[0]["ids"] == [0, 2, 4, 6]
    assert per_rank[1]["ids"] == [1, 3, 5, 0]  # padded with a duplicate

    scores, labels, maps, masks = _data()
    expected = {
        "image_AUROC": image_auroc(scores, labels),
        "image_F1max": f1_max(scores, labels),
        "image_AP": average_precision(scores, labels),
        "pixel_AUROC": pixel_auroc(maps, masks),
        "pixel_AP": pixel_average_precision(maps, masks),
        "pixel_AUPRO": aupro(maps, masks, 0.3),
    }
    single = _run_metrics(list(range(N_SAMPLES)))
    for name, value in expected.items():
        assert single[name] == value
        for rank in (0, 1):
            assert abs(per_rank[rank][name] - value) <= 1e-12, (rank, name)
    # the duplicate changes the result if it is not dropped
    assert (
        image_auroc(scores[[*range(N_SAMPLES), 0]], labels[[*range(N_SAMPLES), 0]]) != expected["image_AUROC"]
    )
