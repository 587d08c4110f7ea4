"""Reading images and masks from disk, with one clear error per bad file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from adbench.errors import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


def image_size(path: str | Path) -> tuple[int, int]:
    """(width, height) from the file header, without decoding the pixels."""
    try:
        with Image.open(path) as image:
            return image.size
    except (OSError, UnidentifiedImageError) as error:
        raise DataError(f"cannot read image {path}: {error}; replace or remove the file") from None


def _to_uint8(image: Image.Image) -> Image.Image:
    """16-bit and float images scaled to 8 bit by their actual range."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        array = np.asarray(image, dtype=np.float64)
        peak = 65535.0 if image.mode.startswith("I;16") or array.max() > 255 else 255.0
        return Image.fromarray(np.clip(array / peak * 255.0 + 0.5, 0, 255).astype(np.uint8))
    return image


def read_rgb(path: str | Path) -> np.ndarray:
    """Decodes an image as RGB uint8 (H, W, 3); grayscale, RGBA, palette and 16-bit files are converted."""
    try:
        with Image.open(path) as image:
            image.load()
            image = _to_uint8(image)
            if (
                image.mode == "RGBA"
                or image.mode == "LA"
                or (image.mode == "P" and "transparency" in image.info)
            ):
                background = Image.new("RGB", image.size, (0, 0, 0))
                background.paste(image.convert("RGBA"), mask=image.convert("RGBA").split()[-1])
                image = background
            return np.asarray(image.convert("RGB"))
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as error:
        raise DataError(f"cannot decode image {path}: {error}; replace or remove the file") from None


def read_mask(path: str | Path) -> np.ndarray:
    """Decodes a ground-truth mask as float32 (H, W) in {0, 1} (any non-zero pixel is anomalous)."""
    try:
        with Image.open(path) as image:
            image.load()
            array = np.asarray(_to_uint8(image).convert("L"))
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as error:
        raise DataError(f"cannot decode mask {path}: {error}; replace or remove the file") from None
    return (array > 0).astype(np.float32)


def list_images(folder: Path) -> list[Path]:
    """Image files directly inside ``folder``, sorted by name (hidden files skipped)."""
    if not folder.is_dir():
        return []
    return sorted(
        p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
    )
