"""anomalib 2.7's PatchCore on prepared tensors, for ``bench_patchcore.py``'s side-by-side run.

Runs in its own virtualenv (``make bench-anomalib-env`` creates ``.venv-anomalib``); imports nothing of
adbench. ``PatchcoreModel`` (the torch model) is built with ``pre_trained=False`` and gets the backbone weights
from ``--weights`` (the same file adbench loads), so nothing is downloaded. Fit = the training-mode forward
over the training images (embeddings stored) + ``subsample_embedding`` (anomalib's KCenterGreedy); inference =
the eval-mode forward (nearest neighbours, Eq. 7 score, map upsampling and Gaussian blur).

Writes ``--output`` (a torch file: times, image scores, anomaly maps and the memory bank) for the caller.

Usage: ``.venv-anomalib/bin/python benchmarks/bench_anomalib_patchcore.py --data X.pt --weights W.pth
--output Y.pt [--backbone tf_efficientnet_lite0] [--layers 2 3] [--ratio 0.1]``
"""

from __future__ import annotations

import argparse
import os
import time

for _name, _value in (("HF_HUB_OFFLINE", "1"), ("WANDB_MODE", "offline"), ("NO_ALBUMENTATIONS_UPDATE", "1")):
    os.environ.setdefault(_name, _value)

import timm  # noqa: E402
import torch  # noqa: E402
from anomalib.models.image.patchcore.torch_model import PatchcoreModel  # noqa: E402


def load_backbone(model: PatchcoreModel, backbone: str, weights: str) -> None:
    """Loads a full-model state dict (matched by position, as the lite0 pip weights need) into the extractor."""
    source = torch.load(weights, map_location="cpu", weights_only=True)
    full = timm.create_model(backbone, pretrained=False).state_dict()
    if not set(full) <= set(source):
        source = dict(zip(full, source.values(), strict=True))
    extractor = model.feature_extractor.feature_extractor
    extractor.load_state_dict({k: source[k] for k in extractor.state_dict()})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", required=True, help="torch file with 'train' and 'test' (N, 3, H, W) tensors"
    )
    parser.add_argument("--weights", required=True, help="backbone state dict file")
    parser.add_argument("--output", required=True, help="torch file to write")
    parser.add_argument("--backbone", default="tf_efficientnet_lite0")
    parser.add_argument("--layers", type=int, nargs="+", default=[2, 3])
    parser.add_argument("--ratio", type=float, default=0.1, help="coreset sampling ratio")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    data = torch.load(args.data, weights_only=True)
    torch.manual_seed(0)
    model = PatchcoreModel(layers=args.layers, backbone=args.backbone, pre_trained=False, num_neighbors=9)
    load_backbone(model, args.backbone, args.weights)
    model.train()
    start = time.perf_counter()
    for i in range(0, len(data["train"]), args.batch):
        model(data["train"][i : i + args.batch])
    embed_s = time.perf_counter() - start
    start = time.perf_counter()
    model.subsample_embedding(args.ratio)
    coreset_s = time.perf_counter() - start
    model.eval()
    scores, maps, start = [], [], time.perf_counter()
    with torch.inference_mode():
        for i in range(0, len(data["test"]), args.batch):
            out = model(data["test"][i : i + args.batch])
            scores.append(out.pred_score), maps.append(out.anomaly_map)
    infer_s = time.perf_counter() - start
    torch.save(
        {
            "embed_s": embed_s, "coreset_s": coreset_s, "infer_s": infer_s, "scores": torch.cat(scores),
            "maps": torch.cat(maps), "memory_bank": model.memory_bank.clone(),
        },
        args.output,
    )  # fmt: skip


if __name__ == "__main__":
    main()
