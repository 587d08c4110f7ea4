"""PatchCore demo options chosen on validation data: normal held-out training images + synthetic anomalies.

No test image is read. For each demo category the normal training images are split (``--val-split``, seeded)
into a fitting part and a validation part; every validation image is scored clean and with one synthetic anomaly
of each kind (CutPaste, confetti noise, Perlin smudge; ``adbench.data.synthesis``), and the table reports image
AUROC and pixel AUPRO on that validation set for each option set. The variants are the paper's own axes:
feature stages (its Fig. 4 ablation), the image-score reweighting (Eq. 7 vs the official code's plain max) and
the coreset ratio (its 10% vs 25% rows).

    python experiments/patchcore_options/validate.py            # writes results/demo/validation.{csv,md}
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd
import torch
from torch.utils.data import DataLoader

from adbench.data import Demo
from adbench.data.batch import Batch
from adbench.data.synthesis import ConfettiNoise, CutPaste, PerlinSmudge
from adbench.metrics import aupro, image_auroc
from adbench.models import PatchCore

HERE = Path(__file__).resolve().parent
VARIANTS = {
    "stages-2-3": {},
    "stages-2-3-4": {"layers": (2, 3, 4)},
    "plain-max": {"num_neighbors": 1},
    "coreset-25": {"coreset_ratio": 0.25},
    "no-projection": {"projection_dim": None},
    "coreset-seed-1": {"coreset_seed": 1},
}
BASE = {"backbone": "tf_efficientnet_lite0", "layers": (2, 3), "pretrained": True, "coreset_ratio": 0.1}
MEAN = STD = 0.5


def validation_set(data: Demo, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Clean validation images and one anomaly of each generator per image (images in [0, 1] space).

    Returns:
        images (N, 3, H, W) normalized for the backbone, labels (N,), masks (N, 1, H, W).
    """
    generator = torch.Generator().manual_seed(seed)
    makers = [CutPaste(mode="mixed"), ConfettiNoise(), PerlinSmudge()]
    images, labels, masks = [], [], []
    for sample in data.dataset("val"):
        clean = sample["image"] * STD + MEAN
        images.append(clean), labels.append(0), masks.append(torch.zeros(1, *clean.shape[-2:]))
        for make in makers:
            anomalous, mask = make(clean, generator)
            if mask.sum() == 0:
                continue
            images.append(anomalous.clamp(0, 1)), labels.append(1), masks.append((mask > 0.5).float())
    normalized = (torch.stack(images) - MEAN) / STD
    return normalized, torch.tensor(labels), torch.stack(masks)


def fit(model: PatchCore, data: Demo) -> None:
    """One pass over the fitting images in index order (as ``adbench fit`` orders them), then the coreset."""
    loader = DataLoader(data.dataset("train"), batch_size=8, collate_fn=Batch.collate)
    patches = torch.cat([model.model.embed(batch.image).flatten(0, 2) for batch in loader])
    options = model.hparams
    model.model.fit_memory_bank(
        patches, options.coreset_ratio, projection_dim=options.projection_dim, seed=options.coreset_seed
    )


def main(argv: list[str] | None = None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="datasets/demo")
    parser.add_argument("--categories", nargs="+", default=["brick", "grass", "coin", "cup"])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS))
    parser.add_argument("--val-split", type=float, default=0.2)
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--output", default=str(HERE / "results" / "demo"))
    args = parser.parse_args(argv)
    rows = []
    for category in args.categories:
        data = Demo(root=args.root, category=category, image_size=args.image_size, mean=(MEAN,) * 3, std=(STD,) * 3, batch_size=8,
                    num_workers=0, val_split=args.val_split, seed=0)  # fmt: skip
        data.setup()
        images, labels, masks = validation_set(data, seed=0)
        for name in args.variants:
            torch.manual_seed(0)
            model = PatchCore(**{**BASE, **VARIANTS[name]}).eval()
            start = time.perf_counter()
            with torch.no_grad():
                fit(model, data)
                maps, scores = zip(
                    *(model.predict(images[i : i + 8]) for i in range(0, len(images), 8)), strict=True
                )
            maps, scores = torch.cat(maps), torch.cat(scores)
            row = {
                "category": category, "variant": name, "image_AUROC": float(image_auroc(scores, labels)),
                "pixel_AUPRO": float(aupro(maps, masks)), "seconds": round(time.perf_counter() - start, 1),
            }  # fmt: skip
            rows.append(row)
            print(row, flush=True)
    table = pd.DataFrame(rows)
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "validation.csv", index=False)
    (out / "validation.md").write_text(markdown(table))
    print(markdown(table))
    return table


def markdown(table: pd.DataFrame) -> str:
    """Per category and variant: image AUROC / pixel AUPRO in %, with a mean row."""
    variants = list(dict.fromkeys(table["variant"]))
    lines = ["| category | " + " | ".join(variants) + " |", "|---" * (len(variants) + 1) + "|"]
    groups = [*dict.fromkeys(table["category"]), "mean"]
    for category in groups:
        rows = table if category == "mean" else table[table["category"] == category]
        cells = []
        for variant in variants:
            cell = rows[rows["variant"] == variant]
            cells.append(f"{100 * cell['image_AUROC'].mean():.1f} / {100 * cell['pixel_AUPRO'].mean():.1f}")
        lines.append(f"| {category} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
