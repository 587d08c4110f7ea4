"""Offline source photographs and the normal samples drawn from them.

Every photograph ships inside an installed wheel (scikit-image's ``skimage/data`` folder, scikit-learn's
``sklearn/datasets/images``), so nothing is downloaded. A normal sample is a random *variation* of its
category's photograph: textures are crops taken anywhere in the texture with flips, 90-degree turns and small
rotations; objects stay roughly aligned (as in MVTec AD) with small shifts, rotations and scale changes.
Photometric jitter and sensor noise are applied last, by :func:`finish`, after any defect is inserted.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage as ndi

IMAGE_SIZE = 256
_PAD = 128  # reflect padding around every source so that jittered crops never leave it


@dataclass(frozen=True)
class CategorySpec:
    """What a demo category is made of.

    Attributes:
        name: category folder name.
        kind: "texture" or "object".
        defects: defect kinds (folder names under ``test/``), each a function of :mod:`.defects`.
        source: the photograph it is cut from.
    """

    name: str
    kind: str
    defects: tuple[str, ...]
    source: str


CATEGORY_SPECS: dict[str, CategorySpec] = {
    spec.name: spec
    for spec in (
        CategorySpec("brick", "texture", ("scratch", "hole", "stain", "deform"), "skimage brick.png"),
        CategorySpec("grass", "texture", ("color", "hole", "texture", "stain"), "skimage grass.png"),
        CategorySpec("gravel", "texture", ("hole", "stain", "texture", "color"), "skimage gravel.png"),
        CategorySpec("coin", "object", ("scratch", "missing", "color", "stain"), "skimage coins.png"),
        CategorySpec(
            "cup", "object", ("scratch", "missing", "misplaced", "stain", "color"), "skimage coffee.png"
        ),
        CategorySpec("cat", "object", ("color", "deform", "misplaced", "stain"), "skimage chelsea.png"),
        CategorySpec("flower", "object", ("missing", "color", "hole", "deform"), "sklearn flower.jpg"),
    )
}

# Two-colour gradient maps that give the grayscale photographs a plausible material colour.
_TINTS: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    "brick": ((0.22, 0.07, 0.04), (0.98, 0.80, 0.66)),
    "grass": ((0.03, 0.10, 0.02), (0.78, 0.92, 0.42)),
    "gravel": ((0.10, 0.08, 0.06), (0.95, 0.88, 0.76)),
    "coin": ((0.03, 0.035, 0.045), (1.00, 0.92, 0.74)),
}


# ----------------------------------------------------------------------------------------------- files


def _packaged_file(package: str, name: str) -> Path:
    path = Path(str(resources.files(package))) / name
    if not path.is_file():
        raise FileNotFoundError(f"{name} is not shipped in the installed {package} package ({path})")
    return path


def _read(package: str, name: str) -> np.ndarray:
    """Reads a packaged photograph as float32 in [0, 1]: (H, W) for grayscale files, else (H, W, 3)."""
    with Image.open(_packaged_file(package, name)) as image:
        image = image.convert("L" if image.mode in ("L", "I;16", "I") else "RGB")
        return np.asarray(image, dtype=np.float32) / 255.0


def _gradient_map(gray: np.ndarray, name: str) -> np.ndarray:
    """Maps grayscale (H, W) to colour (H, W, 3) through the category's tint, after a 1-99% stretch."""
    lo, hi = np.percentile(gray, [1.0, 99.0])
    g = np.clip((gray - lo) / max(hi - lo, 1e-6), 0.0, 1.0)[..., None]
    dark, light = (np.asarray(c, dtype=np.float32) for c in _TINTS[name])
    return (dark + (light - dark) * g).astype(np.float32)


# ----------------------------------------------------------------------------------------------- sources


@dataclass(frozen=True)
class _Source:
    """A padded photograph ready for affine crops.

    Attributes:
        image: padded RGB uint8 image.
        fg: padded foreground mask ("L", 0/255) or None (textures: everything is foreground).
        height: height of the unpadded (rescaled) photograph.
        width: width of the unpadded (rescaled) photograph.
        scale: rescaling applied to the original photograph (coordinates are given in original pixels).
    """

    image: Image.Image
    fg: Image.Image | None
    height: int
    width: int
    scale: float = 1.0


def _object_source(rgb: np.ndarray, fg: np.ndarray, crop: float) -> _Source:
    """Rescales an object photograph (H, W, 3) and its mask (H, W) once, so that a ``crop``-pixel square
    becomes ``IMAGE_SIZE`` pixels (anti-aliased), and pads both for affine crops."""
    scale = IMAGE_SIZE / crop
    h, w = rgb.shape[:2]
    size = (round(w * scale), round(h * scale))
    image = Image.fromarray(np.round(rgb * 255).astype(np.uint8), "RGB").resize(
        size, Image.Resampling.LANCZOS
    )
    mask = Image.fromarray(fg.astype(np.uint8) * 255, "L").resize(size, Image.Resampling.BILINEAR)
    small_fg = np.asarray(mask) > 127
    return _Source(_pad_rgb(_to_float(image)), _pad_mask(small_fg), size[1], size[0], scale)


def _pad_rgb(rgb: np.ndarray) -> Image.Image:
    padded = np.pad(rgb, ((_PAD, _PAD), (_PAD, _PAD), (0, 0)), mode="reflect")
    return Image.fromarray(np.round(np.clip(padded, 0, 1) * 255).astype(np.uint8), "RGB")


def _pad_mask(mask: np.ndarray) -> Image.Image:
    padded = np.pad(mask.astype(np.uint8) * 255, _PAD, mode="constant")
    return Image.fromarray(padded, "L")


def _ellipse(
    shape: tuple[int, int], cx: float, cy: float, ax: float, ay: float, angle: float = 0.0
) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]].astype(np.float32)
    c, s = np.cos(np.deg2rad(angle)), np.sin(np.deg2rad(angle))
    u = ((xx - cx) * c + (yy - cy) * s) / ax
    v = (-(xx - cx) * s + (yy - cy) * c) / ay
    return u * u + v * v <= 1.0


@functools.cache
def _texture_source(name: str) -> _Source:
    gray = _read("skimage.data", f"{name}.png")
    rgb = _gradient_map(gray, name)
    return _Source(_pad_rgb(rgb), None, *gray.shape)


# Nominal crop of each object: (x, y) centre and side, in pixels of the original photograph.
_CUP = ((278.0, 203.0), 372.0)
_CAT = ((228.0, 152.0), 292.0)
_FLOWER = ((307.0, 222.0), 336.0)


@functools.cache
def _cup_source() -> _Source:
    rgb = _read("skimage.data", "coffee.png")
    shape = rgb.shape[:2]
    # Saucer, cup body and the spoon's bowl, measured on the 600x400 photograph.
    fg = (
        _ellipse(shape, 278, 228, 204, 160, -3)
        | _ellipse(shape, 290, 118, 121, 102)
        | _ellipse(shape, 365, 285, 42, 42)
    )
    return _object_source(rgb, fg, _CUP[1])


@functools.cache
def _cat_source() -> _Source:
    rgb = _read("skimage.data", "chelsea.png")
    shape = rgb.shape[:2]
    fg = _ellipse(shape, 225, 165, 175, 140)  # the face; the blurred room behind is background
    return _object_source(rgb, fg, _CAT[1])


@functools.cache
def _flower_source() -> _Source:
    rgb = _read("sklearn.datasets", "images/flower.jpg")
    r, b = rgb[..., 0], rgb[..., 2]
    petals = ndi.gaussian_filter(r - b, 2.0) > 0.2  # orange petals against blue-green foliage
    lab, _ = ndi.label(petals)
    # The dahlia in the middle, without the stem and the flower cut by the bottom edge.
    central = (lab == lab[222, 307]) & _ellipse(rgb.shape[:2], 307, 222, 148, 148)
    fg = ndi.binary_fill_holes(ndi.binary_closing(central, iterations=3))
    return _object_source(rgb, fg, _FLOWER[1])


@dataclass(frozen=True)
class _Coins:
    """The coins photograph split into coins and a clean background plate.

    Attributes:
        image: padded tinted photograph.
        plate: padded background with every coin painted out.
        masks: one padded "L" mask per usable coin.
        centers: (x, y) centroid of each usable coin in unpadded pixels.
        diameters: equivalent diameter of each usable coin in pixels.
    """

    image: Image.Image
    plate: Image.Image
    masks: tuple[Image.Image, ...]
    centers: tuple[tuple[float, float], ...]
    diameters: tuple[float, ...]


@functools.cache
def _coins_source() -> _Coins:
    gray = _read("skimage.data", "coins.png")
    smooth = ndi.gaussian_filter(gray, 1.5)
    background = ndi.gaussian_filter(ndi.minimum_filter(smooth, 40), 20)
    contrast = smooth - background
    # Half of Otsu's threshold on the background-flattened image keeps the dim coins whole.
    hist, edges = np.histogram(contrast, bins=256)
    centers = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(hist)
    w1 = w0[-1] - w0
    m0 = np.cumsum(hist * centers) / np.maximum(w0, 1)
    m1 = (np.sum(hist * centers) - np.cumsum(hist * centers)) / np.maximum(w1, 1)
    otsu = centers[np.argmax(w0 * w1 * (m0 - m1) ** 2)]
    coins = ndi.binary_fill_holes(ndi.binary_opening(contrast > 0.6 * otsu, iterations=2))
    lab, n = ndi.label(coins)
    h, w = gray.shape
    masks, cents, diams = [], [], []
    for index in range(1, n + 1):
        region = lab == index
        area = float(region.sum())
        ys, xs = np.nonzero(region)
        cy, cx = ys.mean(), xs.mean()
        d = 2.0 * np.sqrt(area / np.pi)
        touches = ys.min() < 3 or xs.min() < 3 or ys.max() > h - 4 or xs.max() > w - 4
        roundness = area / max(np.pi / 4 * (np.ptp(ys) + 1) * (np.ptp(xs) + 1), 1.0)
        if area < 1000 or touches or roundness < 0.85:
            continue
        masks.append(_pad_mask(ndi.binary_dilation(region, iterations=1)))
        cents.append((float(cx), float(cy)))
        diams.append(float(d))
    # Flatten the illumination gradient with a normalised convolution of the coin-free pixels, so that
    # every coin lies on the same even, dark background plate.
    free = (~ndi.binary_dilation(coins, iterations=4)).astype(np.float32)
    light = ndi.gaussian_filter(gray * free, 25) / np.maximum(ndi.gaussian_filter(free, 25), 1e-3)
    flat = gray - light + float(np.median(gray[free > 0]))
    rgb = _gradient_map(flat, "coin")
    plate = np.broadcast_to(np.median(rgb[free > 0], axis=0), rgb.shape)
    return _Coins(_pad_rgb(rgb), _pad_rgb(plate), tuple(masks), tuple(cents), tuple(diams))


# ----------------------------------------------------------------------------------------------- crops


def _affine_crop(
    image: Image.Image,
    center: tuple[float, float],
    size: float,
    angle: float,
    flip: bool,
    resample: int,
) -> Image.Image:
    """Renders a square crop of a padded source, rotated and possibly mirrored, at ``IMAGE_SIZE``.

    Args:
        image: padded source image (any PIL mode).
        center: (x, y) centre of the crop in unpadded source pixels.
        size: side of the crop in source pixels.
        angle: rotation of the crop in degrees.
        flip: whether the crop is mirrored left-right.
        resample: PIL resampling filter.

    Returns:
        The crop, ``IMAGE_SIZE`` x ``IMAGE_SIZE``, same mode as ``image``.
    """
    out = IMAGE_SIZE
    scale = size / out
    c, s = np.cos(np.deg2rad(angle)), np.sin(np.deg2rad(angle))
    fx = -1.0 if flip else 1.0
    m = scale * np.array([[c * fx, -s], [s * fx, c]])
    cx, cy = center[0] + _PAD, center[1] + _PAD
    half = out / 2.0
    offset = np.array([cx, cy]) - m @ np.array([half, half])
    data = (m[0, 0], m[0, 1], offset[0], m[1, 0], m[1, 1], offset[1])
    return image.transform((out, out), Image.Transform.AFFINE, data, resample=resample)


def _to_float(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.float32) / 255.0


# ----------------------------------------------------------------------------------------------- normals


def _texture_normal(name: str, rng: np.random.Generator, any_turn: bool) -> tuple[np.ndarray, np.ndarray]:
    src = _texture_source(name)
    turn = int(rng.integers(4)) if any_turn else 2 * int(rng.integers(2))
    angle = 90.0 * turn + rng.uniform(-5.0, 5.0)
    flip = bool(rng.random() < 0.5)
    size = IMAGE_SIZE * rng.uniform(0.92, 1.08)
    margin = 0.5 * size * (np.cos(np.deg2rad(5)) + np.sin(np.deg2rad(5))) + 1
    cx = rng.uniform(margin, src.width - margin)
    cy = rng.uniform(margin, src.height - margin)
    crop = _affine_crop(src.image, (cx, cy), size, angle, flip, Image.Resampling.BICUBIC)
    return _to_float(crop), np.ones((IMAGE_SIZE, IMAGE_SIZE), dtype=bool)


def _object_normal(
    src: _Source,
    rng: np.random.Generator,
    nominal: tuple[tuple[float, float], float],
    shift: float = 0.025,
    max_angle: float = 3.0,
) -> tuple[np.ndarray, np.ndarray]:
    (x, y), size = nominal
    size = size * src.scale
    cx = x * src.scale + rng.uniform(-shift, shift) * size
    cy = y * src.scale + rng.uniform(-shift, shift) * size
    angle = rng.uniform(-max_angle, max_angle)
    size = size * rng.uniform(0.97, 1.03)
    crop = _affine_crop(src.image, (cx, cy), size, angle, False, Image.Resampling.BICUBIC)
    assert src.fg is not None
    fg = _affine_crop(src.fg, (cx, cy), size, angle, False, Image.Resampling.BILINEAR)
    return _to_float(crop), _to_float(fg) > 0.5


def _coin_normal(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    coins = _coins_source()
    k = int(rng.integers(len(coins.masks)))
    d = coins.diameters[k]
    size = 1.6 * d * rng.uniform(0.96, 1.04)
    cx = coins.centers[k][0] + rng.uniform(-0.03, 0.03) * size
    cy = coins.centers[k][1] + rng.uniform(-0.03, 0.03) * size
    angle = rng.uniform(0.0, 360.0)  # loose coins lie at any angle
    crop = _to_float(_affine_crop(coins.image, (cx, cy), size, angle, False, Image.Resampling.BICUBIC))
    plate = _to_float(_affine_crop(coins.plate, (cx, cy), size, angle, False, Image.Resampling.BICUBIC))
    alpha = _to_float(_affine_crop(coins.masks[k], (cx, cy), size, angle, False, Image.Resampling.BILINEAR))
    alpha = ndi.gaussian_filter(alpha, 1.0)[..., None]
    return plate + (crop - plate) * alpha, alpha[..., 0] > 0.5


_NORMALS: dict[str, Callable[[np.random.Generator], tuple[np.ndarray, np.ndarray]]] = {
    "brick": lambda rng: _texture_normal("brick", rng, any_turn=False),
    "grass": lambda rng: _texture_normal("grass", rng, any_turn=True),
    "gravel": lambda rng: _texture_normal("gravel", rng, any_turn=True),
    "coin": _coin_normal,
    "cup": lambda rng: _object_normal(_cup_source(), rng, _CUP),
    "cat": lambda rng: _object_normal(_cat_source(), rng, _CAT),
    "flower": lambda rng: _object_normal(_flower_source(), rng, _FLOWER, max_angle=4.0),
}

# The foreign material pasted by the "texture" defect of each texture category.
FOREIGN_TEXTURE: dict[str, str] = {"grass": "gravel", "gravel": "grass", "brick": "gravel"}


def normal_sample(category: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Draws one clean normal sample of a category (before :func:`finish`).

    Args:
        category: a key of :data:`CATEGORY_SPECS`.
        rng: the sample's generator.

    Returns:
        image (H, W, 3) float32 in [0, 1] and foreground (H, W) bool (all True for textures).
    """
    if category not in _NORMALS:
        raise KeyError(f"unknown demo category {category!r}; choose from {sorted(_NORMALS)}")
    return _NORMALS[category](rng)


def foreign_texture(category: str, rng: np.random.Generator) -> np.ndarray | None:
    """A crop of another texture, for the "texture" defect: (H, W, 3) float32, or None if there is none."""
    other = FOREIGN_TEXTURE.get(category)
    return None if other is None else normal_sample(other, rng)[0]


def finish(image: np.ndarray, rng: np.random.Generator, noise: float = 0.008) -> np.ndarray:
    """Photometric jitter (exposure, white balance, gamma) and sensor noise, then 8-bit quantisation.

    Args:
        image: (H, W, 3) float in [0, 1].
        rng: the sample's generator.
        noise: standard deviation of the Gaussian sensor noise.

    Returns:
        (H, W, 3) uint8.
    """
    gain = rng.uniform(0.95, 1.05) * rng.uniform(0.98, 1.02, size=3)
    gamma = rng.uniform(0.95, 1.05)
    out = np.clip(image, 0.0, 1.0).astype(np.float32) ** np.float32(gamma) * gain.astype(np.float32)
    out = out + noise * rng.standard_normal(out.shape, dtype=np.float32)
    return np.round(np.clip(out, 0.0, 1.0) * 255.0).astype(np.uint8)
