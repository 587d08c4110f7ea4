"""``adbench data``: prepare datasets (build the demo set, download official archives)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="adbench data", description="Prepare datasets for adbench.")
    sub = parser.add_subparsers(dest="action", required=True)
    demo = sub.add_parser("demo", help="build the offline demo set (MVTec layout) from packaged photographs")
    demo.add_argument("--root", default="./datasets/demo", help="where to build it (default: %(default)s)")
    demo.add_argument("--seed", type=int, default=0, help="seed of the demo set (default: %(default)s)")
    demo.add_argument("--force", action="store_true", help="rebuild even when a cached copy exists")
    download = sub.add_parser(
        "download", help="download an official archive, verify its checksum and extract it safely"
    )
    download.add_argument("dataset", choices=["mvtec", "mvtec3d", "ksdd2"], help="which dataset")
    download.add_argument("--root", required=True, help="folder that receives the category folders")
    download.add_argument(
        "--archive", default=None, help="use an archive you already downloaded instead of the network"
    )
    return parser


def data_main(argv: Sequence[str]) -> int:
    """Runs ``adbench data ...``; returns the exit code."""
    args = build_parser().parse_args(list(argv))
    if args.action == "demo":
        from adbench.data.demo_build import build_demo

        root = build_demo(args.root, seed=args.seed, force=args.force)
        print(f"demo data ready at {root}")
        return 0
    from adbench.data.download import MVTEC_3D, MVTEC_AD, download_and_extract
    from adbench.errors import DataError

    if args.dataset == "ksdd2":
        raise DataError(
            "KolektorSDD2 has no published checksum, so adbench does not download it: get it from its authors "
            f"(ViCoS, University of Ljubljana) and unpack it so that {args.root}/train and {args.root}/test exist"
        )
    info = MVTEC_AD if args.dataset == "mvtec" else MVTEC_3D
    root = download_and_extract(info, args.root, args.archive)
    print(f"{info.name} ready at {root}")
    return 0
