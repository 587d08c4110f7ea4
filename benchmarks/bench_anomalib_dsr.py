"""Times anomalib's DSR inference (``DsrModel`` in eval mode) for ``bench_models.py``'s side-by-side run.

Runs in its own virtualenv (``make bench-anomalib-env`` creates ``.venv-anomalib``); imports nothing of
adbench. The torch model is built directly with its default sizes and random weights: nothing is
downloaded (anomalib's Lightning ``Dsr`` would fetch the pretrained VQ weights). The default sizes are
checked against the paper's (hidden 128, residual 64, 2 residual layers, codebooks 4096 x 128).

One timed call is ``model(image)`` under ``torch.inference_mode()``: anomalib's test path (general and
object-specific reconstructions, detection and upsampling modules, image score from the 21x21 mean-filtered
detection map), as adbench's DSR test path. Prints one JSON line: per batch size the median milliseconds per
image and the per-call times.

Usage: ``.venv-anomalib/bin/python benchmarks/bench_anomalib_dsr.py [--batches 1 8] [--image-size 256]``
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import statistics
import time

for _name, _value in (("HF_HUB_OFFLINE", "1"), ("WANDB_MODE", "offline"), ("NO_ALBUMENTATIONS_UPDATE", "1")):
    os.environ.setdefault(_name, _value)

import torch  # noqa: E402

PAPER_SIZES = {
    "embedding_dim": 128,
    "num_embeddings": 4096,
    "num_hiddens": 128,
    "num_residual_layers": 2,
    "num_residual_hiddens": 64,
}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="torch device (cpu or cuda)")
    parser.add_argument("--image-size", type=int, default=256, help="image height and width")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8], help="batch sizes to time")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per batch size (median)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls before the timed ones")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--budget", type=float, default=120.0, help="seconds after which repeating stops")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast")
    parser.add_argument("--channels-last", action="store_true", help="channels-last model and inputs")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True

    import anomalib
    from anomalib.models.image.dsr.torch_model import DsrModel

    defaults = {
        name: p.default
        for name, p in inspect.signature(DsrModel.__init__).parameters.items()
        if name in PAPER_SIZES
    }
    if defaults != PAPER_SIZES:
        raise SystemExit(f"anomalib DsrModel defaults {defaults} differ from the paper's {PAPER_SIZES}")
    torch.manual_seed(0)
    model = DsrModel().to(device).eval()
    codebook = tuple(model.discrete_latent_model.vq_vae_bot._embedding.weight.shape)
    if codebook != (PAPER_SIZES["num_embeddings"], PAPER_SIZES["embedding_dim"]):
        raise SystemExit(f"anomalib DsrModel codebook {codebook} is not the paper's 4096 x 128")
    if args.channels_last:
        model.to(memory_format=torch.channels_last)
    run = torch.compile(model) if args.compile else model

    batches = {}
    for b in args.batches:
        image = torch.rand(b, 3, args.image_size, args.image_size, generator=torch.Generator().manual_seed(b))
        image = image.to(device)
        if args.channels_last:
            image = image.contiguous(memory_format=torch.channels_last)

        def call(image: torch.Tensor = image) -> None:
            with torch.inference_mode(), torch.autocast(device.type, torch.bfloat16, enabled=args.bf16):
                out = run(image)
                _ = out.anomaly_map, out.pred_score

        start = time.perf_counter()
        for i in range(max(args.warmup, 1) if args.compile else args.warmup):  # compilation is never timed
            if i > 0 and time.perf_counter() - start > args.budget / 2:
                break
            call()
            sync(device)
        times: list[float] = []
        for _ in range(args.repeats):
            if times and time.perf_counter() - start > args.budget:
                break
            sync(device)
            t0 = time.perf_counter()
            call()
            sync(device)
            times.append(time.perf_counter() - t0)
        seconds = statistics.median(times)
        batches[str(b)] = {"ms_per_image": 1000 * seconds / b, "ms_per_batch_runs": [1000 * t for t in times]}

    print(
        json.dumps(
            {
                "anomalib_version": anomalib.__version__,
                "torch": torch.__version__,
                "threads": torch.get_num_threads(),
                "sizes": {**defaults, "detection_and_upsampling_base_width": 64},
                "params_m": sum(p.numel() for p in model.parameters()) / 1e6,
                "batches": batches,
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
