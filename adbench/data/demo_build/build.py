"""Writes the demo dataset in the MVTec AD layout, atomically, with a marker that makes later calls free.

Layout::

    root/.adbench_demo.json
    root/<category>/train/good/000.png
    root/<category>/test/good/000.png
    root/<category>/test/<defect>/000.png
    root/<category>/ground_truth/<defect>/000_mask.png   (uint8 0/255, single channel)

Every sample has its own generator, seeded from (seed, category, split, defect, index), so the files are
byte-identical for a seed whatever subset of categories is built, and in whatever order.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
import time
import uuid
import zlib
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from adbench.data.demo_build.defects import apply_defect
from adbench.data.demo_build.sources import CATEGORY_SPECS, IMAGE_SIZE, finish, foreign_texture, normal_sample

log = logging.getLogger(__name__)

VERSION = 1
MARKER = ".adbench_demo.json"
DEMO_CATEGORIES: tuple[str, ...] = tuple(CATEGORY_SPECS)
DEMO_DEFECTS: dict[str, tuple[str, ...]] = {name: spec.defects for name, spec in CATEGORY_SPECS.items()}

N_TRAIN = 100
N_GOOD = 25
N_DEFECTIVE = 40
SUBTLE_EVERY = 4  # every 4th defect of a type (indices 3, 7, ...) is small and/or low-contrast


def sample_rng(seed: int, category: str, *key: str | int) -> np.random.Generator:
    """The generator of one sample, independent of every other sample.

    Args:
        seed: dataset seed (non-negative).
        category: category name.
        *key: split, defect type and index (strings are hashed with CRC-32, which is stable across runs).

    Returns:
        A fresh ``numpy.random.Generator``.
    """
    words = [seed, zlib.crc32(category.encode())]
    words += [zlib.crc32(k.encode()) if isinstance(k, str) else int(k) for k in key]
    return np.random.default_rng(np.random.SeedSequence(words))


def defect_counts(category: str, n_defective: int = N_DEFECTIVE) -> dict[str, int]:
    """Splits ``n_defective`` test images evenly over a category's defect types (first types get the rest)."""
    kinds = CATEGORY_SPECS[category].defects
    base, rest = divmod(n_defective, len(kinds))
    return {kind: base + (i < rest) for i, kind in enumerate(kinds)}


def is_subtle(index: int) -> bool:
    """Whether the ``index``-th defect of a type is a subtle one."""
    return index % SUBTLE_EVERY == SUBTLE_EVERY - 1


def _save_png(path: Path, array: np.ndarray) -> None:
    Image.fromarray(array).save(path, format="PNG", compress_level=1)


def make_defective(category: str, kind: str, seed: int, index: int) -> tuple[np.ndarray, np.ndarray]:
    """Draws the ``index``-th test image of a defect type.

    Args:
        category: category name.
        kind: one of the category's defect types.
        seed: dataset seed.
        index: index within the defect type.

    Returns:
        image (H, W, 3) uint8 and mask (H, W) bool.
    """
    spec = CATEGORY_SPECS[category]
    rng = sample_rng(seed, category, "test", kind, index)
    image, fg = normal_sample(category, rng)
    other = foreign_texture(category, rng) if kind == "texture" else None
    fg_arg = None if spec.kind == "texture" else fg
    image, mask = apply_defect(kind, image, rng, is_subtle(index), fg_arg, other)
    return finish(image, rng), mask


def make_normal(category: str, split: str, seed: int, index: int) -> np.ndarray:
    """Draws the ``index``-th normal image of a split ("train" or "test"): (H, W, 3) uint8."""
    rng = sample_rng(seed, category, split, "good", index)
    image, _ = normal_sample(category, rng)
    return finish(image, rng)


def _write_normal(path: Path, category: str, split: str, seed: int, index: int) -> None:
    _save_png(path, make_normal(category, split, seed, index))


def _write_defective(
    image_path: Path, mask_path: Path, category: str, kind: str, seed: int, index: int
) -> None:
    image, mask = make_defective(category, kind, seed, index)
    _save_png(image_path, image)
    _save_png(mask_path, mask.astype(np.uint8) * 255)


def build_category(
    out: Path,
    category: str,
    seed: int,
    n_train: int = N_TRAIN,
    n_good: int = N_GOOD,
    n_defective: int = N_DEFECTIVE,
    workers: int = 1,
) -> dict[str, int]:
    """Writes one category folder.

    Args:
        out: the category folder to create (``root/<category>``).
        category: category name.
        seed: dataset seed.
        n_train: normal training images.
        n_good: normal test images.
        n_defective: defective test images, split over the defect types.
        workers: threads drawing and encoding images (files do not depend on it).

    Returns:
        Image count per folder, e.g. ``{"train/good": 100, "test/good": 25, "test/hole": 10, ...}``.
    """
    counts: dict[str, int] = {}
    tasks: list[tuple[Callable[..., None], tuple[Any, ...]]] = []
    for split, n in (("train", n_train), ("test", n_good)):
        folder = out / split / "good"
        folder.mkdir(parents=True, exist_ok=True)
        tasks += [(_write_normal, (folder / f"{i:03d}.png", category, split, seed, i)) for i in range(n)]
        counts[f"{split}/good"] = n
    for kind, n in defect_counts(category, n_defective).items():
        images, masks = out / "test" / kind, out / "ground_truth" / kind
        images.mkdir(parents=True, exist_ok=True)
        masks.mkdir(parents=True, exist_ok=True)
        tasks += [
            (
                _write_defective,
                (images / f"{i:03d}.png", masks / f"{i:03d}_mask.png", category, kind, seed, i),
            )
            for i in range(n)
        ]
        counts[f"test/{kind}"] = n
    normal_sample(category, sample_rng(seed, category, "warm-up"))  # fill the source caches before threads
    foreign_texture(category, sample_rng(seed, category, "warm-up"))
    if workers <= 1:
        for fn, args in tasks:
            fn(*args)
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for future in [pool.submit(fn, *args) for fn, args in tasks]:
                future.result()
    return counts


# ----------------------------------------------------------------------------------------------- cache


def read_marker(root: str | Path) -> dict[str, Any] | None:
    """The marker of a built demo set, or None where there is none (or it is unreadable)."""
    try:
        with open(Path(root) / MARKER, encoding="utf-8") as f:
            marker = json.load(f)
    except (OSError, ValueError):
        return None
    return marker if isinstance(marker, dict) else None


def _params(n_train: int, n_good: int, n_defective: int) -> dict[str, int]:
    return {"n_train": n_train, "n_good": n_good, "n_defective": n_defective, "image_size": IMAGE_SIZE}


def _is_current(
    root: Path, marker: dict[str, Any] | None, seed: int, categories: Sequence[str], params: dict
) -> bool:
    if marker is None or marker.get("version") != VERSION or marker.get("seed") != seed:
        return False
    if marker.get("params") != params:
        return False
    built = marker.get("categories") or []
    return all(c in built and (root / c).is_dir() for c in categories)


@contextlib.contextmanager
def _lock(root: Path) -> Iterator[None]:
    """Serialises builders of the same root across processes (a no-op where ``fcntl`` is missing)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    lock_path = root.parent / f".{root.name}.lock"
    with open(lock_path, "a+") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        except OSError:  # a file system without locks: the atomic rename still keeps the set whole
            log.warning("could not lock %s; building without a lock", lock_path)
            yield
            return
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _replace(tmp: Path, root: Path) -> None:
    """Moves the finished ``tmp`` folder to ``root``, setting an older build aside first and deleting it."""
    old = None
    if root.exists():
        old = root.with_name(f".{root.name}.old-{uuid.uuid4().hex[:8]}")
        os.replace(root, old)
    os.replace(tmp, root)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def build_demo(
    root: str | Path,
    seed: int = 0,
    categories: Sequence[str] | None = None,
    force: bool = False,
    *,
    n_train: int = N_TRAIN,
    n_good: int = N_GOOD,
    n_defective: int = N_DEFECTIVE,
    workers: int | None = None,
) -> Path:
    """Builds the demo set under ``root`` unless an identical one is there already.

    A set built with the same seed, version and sizes that holds every requested category is reused as is.
    Otherwise the requested categories (plus those of a compatible earlier build) are written to a
    temporary sibling folder, which then replaces ``root`` in one rename. A ``root`` that exists, is not
    empty and has no demo marker is never deleted: that raises ``FileExistsError``.

    Args:
        root: dataset folder (``root/<category>/...``).
        seed: dataset seed (non-negative); another seed gives other images.
        categories: categories to build; all of :data:`DEMO_CATEGORIES` by default.
        force: rebuild even if the cached set is current.
        n_train: normal training images per category.
        n_good: normal test images per category.
        n_defective: defective test images per category, split over its defect types.
        workers: threads drawing and encoding images; by default up to 4, one per CPU. The files do not
            depend on it.

    Returns:
        ``root`` as a ``Path``.
    """
    root = Path(root).expanduser().absolute()
    wanted = list(DEMO_CATEGORIES if categories is None else dict.fromkeys(categories))
    unknown = [c for c in wanted if c not in CATEGORY_SPECS]
    if unknown:
        raise ValueError(f"unknown demo categories {unknown}; choose from {list(DEMO_CATEGORIES)}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if min(n_train, n_good, n_defective) < 0:
        raise ValueError("image counts must be non-negative")
    seed = int(seed)
    params = _params(n_train, n_good, n_defective)
    if not force and _is_current(root, read_marker(root), seed, wanted, params):
        return root

    root.parent.mkdir(parents=True, exist_ok=True)
    with _lock(root):
        marker = read_marker(root)
        if not force and _is_current(root, marker, seed, wanted, params):
            return root  # another process built it while we waited
        if marker is None and root.exists() and (not root.is_dir() or any(root.iterdir())):
            raise FileExistsError(
                f"{root} exists and is not a demo dataset (no {MARKER}); not overwriting it"
            )
        same = {"version": VERSION, "seed": seed, "params": params}
        if marker is not None and all(marker.get(k) == v for k, v in same.items()):
            # Same set, more categories: keep those built before.
            wanted += [c for c in marker.get("categories", []) if c in CATEGORY_SPECS and c not in wanted]
        ordered = [c for c in DEMO_CATEGORIES if c in wanted]

        start = time.perf_counter()
        tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.building-", dir=root.parent))
        try:
            if workers is None:
                workers = max(1, min(4, os.cpu_count() or 1))
            counts = {
                c: build_category(tmp / c, c, seed, n_train, n_good, n_defective, workers) for c in ordered
            }
            new_marker = {
                "seed": seed,
                "version": VERSION,
                "categories": ordered,
                "counts": counts,
                "defects": {c: list(DEMO_DEFECTS[c]) for c in ordered},
                "params": params,
            }
            with open(tmp / MARKER, "w", encoding="utf-8") as f:
                json.dump(new_marker, f, indent=2, sort_keys=True)
            os.chmod(tmp, 0o755)  # mkdtemp makes it private
            _replace(tmp, root)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        log.info(
            "built demo set %s (seed %d, %d categories) in %.1f s",
            root,
            seed,
            len(ordered),
            time.perf_counter() - start,
        )
    return root
