"""Synthetic defects with pixel-accurate masks.

Each defect kind is one function ``(image, rng, subtle, fg=None, ...) -> (image, mask)``:

* ``image``: (H, W, 3) float in [0, 1], left untouched (a new array is returned);
* ``rng``: the sample's ``numpy.random.Generator`` (the only source of randomness);
* ``subtle``: draw a small and/or low-contrast variant;
* ``fg``: (H, W) bool, where the object is (None for textures: everywhere); defects are placed on it;
* returns the defective image (H, W, 3) float32 and its mask (H, W) bool, True where the image changed
  meaningfully (soft-edged alphas are thresholded at 0.5, warps mark their displaced region).

:func:`apply_defect` draws one kind again (same generator, so still deterministic) until the result is a
visible defect: enough pixels, and enough mean change inside the mask.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage as ndi
from skimage.color import hsv2rgb, rgb2hsv

Defect = Callable[..., tuple[np.ndarray, np.ndarray]]

# ----------------------------------------------------------------------------------------------- helpers


@functools.lru_cache(maxsize=8)
def _grid(shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates (yy, xx), each (H, W) float32, read-only."""
    yy, xx = np.mgrid[: shape[0], : shape[1]].astype(np.float32)
    yy.flags.writeable = False
    xx.flags.writeable = False
    return yy, xx


def _smooth_noise(shape: tuple[int, int], rng: np.random.Generator, sigma: float) -> np.ndarray:
    """Gaussian-filtered white noise, (H, W) float32 with unit standard deviation."""
    noise = ndi.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma)
    return noise / (float(noise.std()) + 1e-8)


def _foreground(image: np.ndarray, fg: np.ndarray | None) -> np.ndarray:
    return np.ones(image.shape[:2], dtype=bool) if fg is None else fg.astype(bool)


def _soft(fg: np.ndarray) -> np.ndarray:
    """A slightly feathered (H, W) float32 version of a boolean foreground."""
    return np.clip(ndi.gaussian_filter(fg.astype(np.float32), 0.7) * 2.0 - 0.5, 0.0, 1.0) * fg


def _inset_distance(fg: np.ndarray) -> np.ndarray:
    """Distance (H, W) of each pixel to the nearest background pixel or image border."""
    inner = np.zeros((fg.shape[0] + 2, fg.shape[1] + 2), dtype=bool)
    inner[1:-1, 1:-1] = fg
    return ndi.distance_transform_edt(inner)[1:-1, 1:-1]


def _pick(rng: np.random.Generator, allowed: np.ndarray) -> tuple[float, float]:
    """A random (x, y) among the True pixels of ``allowed`` (H, W), with sub-pixel jitter."""
    index = int(rng.choice(np.flatnonzero(allowed)))
    y, x = divmod(index, allowed.shape[1])
    return x + rng.uniform(-0.5, 0.5), y + rng.uniform(-0.5, 0.5)


def _pick_inside(rng: np.random.Generator, fg: np.ndarray, inset: float) -> tuple[float, float]:
    """A random (x, y) at least ``inset`` pixels inside the foreground (deepest part if none is that deep)."""
    dist = _inset_distance(fg)
    allowed = dist >= min(inset, 0.6 * float(dist.max()))
    return _pick(rng, allowed)


def _window(shape: tuple[int, int], center: tuple[float, float], half: float) -> tuple[slice, slice]:
    """The (rows, cols) slices of the square of half-side ``half`` around ``center`` = (x, y), clipped."""
    x0, x1 = max(int(center[0] - half), 0), min(int(center[0] + half) + 2, shape[1])
    y0, y1 = max(int(center[1] - half), 0), min(int(center[1] + half) + 2, shape[0])
    return slice(y0, max(y1, y0)), slice(x0, max(x1, x0))


def _blob(
    shape: tuple[int, int],
    center: tuple[float, float],
    radius: float,
    rng: np.random.Generator,
    irregularity: float = 0.3,
    softness: float = 1.0,
    max_aspect: float = 1.6,
) -> tuple[np.ndarray, np.ndarray]:
    """An irregular, elongated blob.

    Args:
        shape: (H, W).
        center: (x, y).
        radius: mean radius in pixels.
        rng: generator.
        irregularity: amplitude of the low-order wobble of the outline (0: an ellipse).
        softness: width in pixels of the linear alpha ramp across the outline.
        max_aspect: largest length/width ratio.

    Returns:
        alpha (H, W) float32 in [0, 1], 0.5 on the outline; signed distance (H, W) float32 to the outline
        in pixels, positive inside (-1e3 far away from the blob).
    """
    angle = rng.uniform(0.0, np.pi)
    stretch = np.sqrt(rng.uniform(1.0, max_aspect))
    amplitudes = irregularity * rng.uniform(0.0, 1.0, size=4) / np.arange(2, 6)
    phases = rng.uniform(0.0, 2 * np.pi, size=4)
    reach = radius * (1.0 + amplitudes.sum() + 0.3 * irregularity) * stretch + softness + 2.0
    win = _window(shape, center, reach)
    yy, xx = (g[win] for g in _grid(shape))
    dx, dy = xx - center[0], yy - center[1]
    c, s = np.cos(angle), np.sin(angle)
    u = (dx * c + dy * s) / stretch
    v = (-dx * s + dy * c) * stretch
    dist = np.hypot(u, v)
    theta = np.arctan2(v, u)
    wobble = np.zeros(dist.shape, dtype=np.float32)
    for k in range(4):
        wobble += amplitudes[k] * np.cos((k + 2) * theta + phases[k])
    if dist.size:
        wobble += 0.06 * irregularity * _smooth_noise(dist.shape, rng, 1.5)
    signed = np.full(shape, -1e3, dtype=np.float32)
    signed[win] = radius * (1.0 + wobble) - dist
    alpha = np.clip(0.5 + signed / max(softness, 1e-3), 0.0, 1.0).astype(np.float32)
    return alpha, signed


def _sample(image: np.ndarray, src_y: np.ndarray, src_x: np.ndarray) -> np.ndarray:
    """Bilinear samples (h, w, 3) of an image (H, W, 3) at the source coordinates, each (h, w)."""
    coords = np.stack([src_y, src_x])
    return np.stack(
        [ndi.map_coordinates(image[..., c], coords, order=1, mode="reflect") for c in range(3)], axis=-1
    )


def _lerp(a: np.ndarray, b: np.ndarray, t: np.ndarray) -> np.ndarray:
    """``a + (b - a) * t``; images (H, W, 3), weight (H, W)."""
    return a + (b - a) * t[..., None]


def _result(out: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.clip(out, 0.0, 1.0).astype(np.float32), mask.astype(bool)


# ----------------------------------------------------------------------------------------------- defects


def scratch(
    image: np.ndarray, rng: np.random.Generator, subtle: bool = False, fg: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """A thin, smoothly curved, tapered line, lighter (bare material) or darker (groove).

    Args:
        image: (H, W, 3) float in [0, 1].
        rng: generator.
        subtle: short, thin and low contrast.
        fg: (H, W) bool where the object is; the scratch starts on it and is clipped to it.

    Returns:
        image (H, W, 3) float32, mask (H, W) bool.
    """
    h, w = image.shape[:2]
    fg = _foreground(image, fg)
    length = rng.uniform(25, 55) if subtle else rng.uniform(55, 160)
    width = rng.uniform(1.2, 1.7) if subtle else rng.uniform(1.6, 3.2)
    strength = rng.uniform(0.25, 0.4) if subtle else rng.uniform(0.55, 0.9)
    x, y = _pick_inside(rng, fg, 6.0)
    heading = rng.uniform(0.0, 2 * np.pi)
    bend = rng.normal(0.0, 0.006)  # curvature in rad/px, drifting slowly along the stroke
    step = 2.0
    points = [(x, y)]
    for _ in range(int(length / step)):
        bend += rng.normal(0.0, 0.0008)
        heading += bend * step
        x, y = x + step * np.cos(heading), y + step * np.sin(heading)
        if not (1 <= x < w - 1 and 1 <= y < h - 1):
            break
        points.append((x, y))
    ss = 4  # supersampling of the stroke, for an anti-aliased coverage
    canvas = Image.new("L", (w * ss, h * ss), 0)
    draw = ImageDraw.Draw(canvas)
    n = len(points)
    line_width = max(1, round(width * ss))
    for i in range(n - 1):
        t = (i + 0.5) / max(n - 1, 1)
        taper = np.clip(min(t, 1.0 - t) / 0.15, 0.0, 1.0) ** 0.5
        fill = int(round(255 * taper))
        (x0, y0), (x1, y1) = points[i], points[i + 1]
        draw.line([(x0 * ss, y0 * ss), (x1 * ss, y1 * ss)], fill=fill, width=line_width)
        r = line_width / 2
        draw.ellipse([x1 * ss - r, y1 * ss - r, x1 * ss + r, y1 * ss + r], fill=fill)
    alpha = np.asarray(canvas.reduce(ss), dtype=np.float32) / 255.0 * _soft(fg)
    target = 1.0 if rng.random() < 0.5 else 0.0
    out = image + (target - image) * (strength * alpha)[..., None]
    return _result(out, alpha >= 0.5)


_STAIN_COLOURS = np.array(
    [
        (0.45, 0.28, 0.12),  # coffee / oil
        (0.25, 0.22, 0.20),  # soot
        (0.62, 0.30, 0.10),  # rust
        (0.40, 0.50, 0.22),  # mould
        (0.95, 0.93, 0.85),  # dried residue (lightens)
    ],
    dtype=np.float32,
)


def stain(
    image: np.ndarray, rng: np.random.Generator, subtle: bool = False, fg: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """A soft-edged, mottled colour blob, sometimes with a darker drying ring.

    Args:
        image: (H, W, 3) float in [0, 1].
        rng: generator.
        subtle: small and faint.
        fg: (H, W) bool where the object is; the stain is clipped to it.

    Returns:
        image (H, W, 3) float32, mask (H, W) bool (alpha of the blob above 0.3: the faint fringe beyond is
        left out).
    """
    fg = _foreground(image, fg)
    radius = rng.uniform(6, 12) if subtle else rng.uniform(12, 38)
    opacity = rng.uniform(0.15, 0.25) if subtle else rng.uniform(0.4, 0.75)
    center = _pick_inside(rng, fg, 0.6 * radius)
    alpha, signed = _blob(image.shape[:2], center, radius, rng, 0.35, radius * rng.uniform(0.25, 0.45))
    alpha = alpha * _soft(fg)
    mottle = 0.8 + 0.2 * np.tanh(_smooth_noise(image.shape[:2], rng, 3.0))
    if rng.random() < 0.4:
        ring = np.exp(-(((signed - 0.15 * radius) / (0.1 * radius + 1.0)) ** 2))  # just inside the edge
        mottle = mottle * (1.0 + 0.6 * ring)
    weight = np.clip(opacity * alpha * mottle, 0.0, 1.0)
    colour = _STAIN_COLOURS[int(rng.integers(len(_STAIN_COLOURS)))]
    if colour.mean() > 0.8:
        out = _lerp(image, np.broadcast_to(colour, image.shape), weight)
    else:
        out = image * (1.0 - weight[..., None] * (1.0 - colour))  # absorbing: tints and darkens
    return _result(out, alpha > 0.3)


def hole(
    image: np.ndarray, rng: np.random.Generator, subtle: bool = False, fg: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """A dark irregular cavity with a shaded inner wall and a frayed (lighter or charred) rim.

    Args:
        image: (H, W, 3) float in [0, 1].
        rng: generator.
        subtle: a small hole.
        fg: (H, W) bool where the object is; the hole lies fully on it.

    Returns:
        image (H, W, 3) float32, mask (H, W) bool (cavity and rim).
    """
    shape = image.shape[:2]
    fg = _foreground(image, fg)
    radius = rng.uniform(3, 6) if subtle else rng.uniform(7, 20)
    rim_width = rng.uniform(1.5, 3.0)
    center = _pick_inside(rng, fg, radius * 1.3 + rim_width + 2)
    inner, signed = _blob(shape, center, radius, rng, 0.3, 1.2, 1.5)
    outer = np.clip(0.5 + (signed + rim_width) / 1.2, 0.0, 1.0)
    rim = (outer - inner) * np.clip(0.7 + 0.3 * _smooth_noise(shape, rng, 1.0), 0.2, 1.0)
    yy, xx = _grid(shape)
    light = rng.uniform(0.0, 2 * np.pi)
    wall = np.clip(-((xx - center[0]) * np.cos(light) + (yy - center[1]) * np.sin(light)) / radius, 0.0, 1.0)
    wall = wall * np.clip(1.0 - signed / (0.5 * radius), 0.0, 1.0)  # lit only near the far edge
    depth = image * rng.uniform(0.05, 0.15) + 0.02 + 0.12 * wall[..., None]
    if rng.random() < 0.7:
        rim_colour = image + rng.uniform(0.25, 0.45) * (1.0 - image)  # torn fibres catch the light
    else:
        rim_colour = image * rng.uniform(0.35, 0.55)  # charred edge
    out = _lerp(image, rim_colour, rim)
    out = _lerp(out, depth, inner)
    return _result(out, outer > 0.5)


def color(
    image: np.ndarray, rng: np.random.Generator, subtle: bool = False, fg: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """A discoloured region with soft edges: hue shifted, bleached, or browned.

    Args:
        image: (H, W, 3) float in [0, 1].
        rng: generator.
        subtle: a small region, a third to a half of the colour change.
        fg: (H, W) bool where the object is; the region is clipped to it.

    Returns:
        image (H, W, 3) float32, mask (H, W) bool (alpha above 0.5).
    """
    fg = _foreground(image, fg)
    radius = rng.uniform(9, 16) if subtle else rng.uniform(16, 45)
    center = _pick_inside(rng, fg, 0.6 * radius)
    alpha, _ = _blob(image.shape[:2], center, radius, rng, 0.3, rng.uniform(2.0, 6.0))
    alpha = alpha * _soft(fg)
    win = _window(image.shape[:2], center, 2.5 * radius + 8)
    hsv = rgb2hsv(np.clip(image[win], 0.0, 1.0))
    h, sat, val = hsv[..., 0], hsv[..., 1], hsv[..., 2]
    amount = rng.uniform(0.3, 0.5) if subtle else 1.0
    mode = int(rng.integers(3))
    if mode == 0:  # hue shift (another dye / alloy)
        sign = 1.0 if rng.random() < 0.5 else -1.0
        h[...] = (h + sign * amount * rng.uniform(0.06, 0.14)) % 1.0
        sat[...] = np.clip(sat * (1.0 + amount * rng.uniform(0.0, 0.3)) + amount * 0.05, 0.0, 1.0)
    elif mode == 1:  # bleached / faded
        sat[...] = sat * (1.0 - amount * rng.uniform(0.4, 0.7))
        val[...] = val + (1.0 - val) * amount * rng.uniform(0.1, 0.3)
    else:  # browned / oxidised: towards a dull orange-brown, darker
        pull = amount * rng.uniform(0.5, 0.9)
        dh = ((0.07 - h + 0.5) % 1.0) - 0.5  # signed hue distance to brown
        h[...] = (h + pull * dh) % 1.0
        sat[...] = np.clip(sat + pull * (0.55 - sat) * 0.6, 0.0, 1.0)
        val[...] = val * (1.0 - amount * rng.uniform(0.2, 0.45))
    recoloured = image.copy()
    recoloured[win] = hsv2rgb(hsv)
    out = _lerp(image, recoloured, alpha)
    return _result(out, alpha > 0.5)


def texture(
    image: np.ndarray,
    rng: np.random.Generator,
    subtle: bool = False,
    fg: np.ndarray | None = None,
    other: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """A region whose texture changed: smeared (blurred) or replaced by a foreign material.

    Args:
        image: (H, W, 3) float in [0, 1].
        rng: generator.
        subtle: small region, light blur or colour-matched foreign material.
        fg: (H, W) bool where the object is; the region is clipped to it.
        other: (H, W, 3) float image of the foreign material; without it the region is smeared.

    Returns:
        image (H, W, 3) float32, mask (H, W) bool (alpha above 0.5).
    """
    fg = _foreground(image, fg)
    radius = rng.uniform(10, 18) if subtle else rng.uniform(18, 45)
    center = _pick_inside(rng, fg, 0.6 * radius)
    alpha, _ = _blob(image.shape[:2], center, radius, rng, 0.35, rng.uniform(2.0, 4.0))
    alpha = alpha * _soft(fg)
    inside = alpha > 0.5
    if other is None or rng.random() < 0.4:
        sigma = rng.uniform(1.3, 2.0) if subtle else rng.uniform(2.5, 5.0)
        replacement = ndi.gaussian_filter(image, (sigma, sigma, 0))
    else:
        own = image[inside].mean(axis=0) if inside.any() else image.reshape(-1, 3).mean(axis=0)
        match = 1.0 if subtle else rng.uniform(0.0, 0.6)  # how far the material's colour is matched
        replacement = other + match * (own - other.reshape(-1, 3).mean(axis=0))
    out = _lerp(image, replacement, alpha)
    return _result(out, inside)


def deform(
    image: np.ndarray, rng: np.random.Generator, subtle: bool = False, fg: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """A smooth local warp: swirl, bulge/pinch or push, fading out with a Gaussian profile.

    Args:
        image: (H, W, 3) float in [0, 1].
        rng: generator.
        subtle: small region, small displacement.
        fg: (H, W) bool where the object is; the warp is centred on it.

    Returns:
        image (H, W, 3) float32, mask (H, W) bool: pixels displaced by at least one pixel, holes filled.
    """
    shape = image.shape[:2]
    fg = _foreground(image, fg)
    radius = rng.uniform(12, 20) if subtle else rng.uniform(20, 40)
    cx, cy = _pick_inside(rng, fg, 0.5 * radius)
    win = _window(shape, (cx, cy), 2.2 * radius)  # the Gaussian falloff is below 1e-4 beyond
    yy, xx = (g[win] for g in _grid(shape))
    dx, dy = xx - cx, yy - cy
    falloff = np.exp(-2.0 * (dx * dx + dy * dy) / radius**2)
    sign = 1.0 if rng.random() < 0.5 else -1.0
    mode = int(rng.integers(3))
    if mode == 0:  # swirl
        theta = sign * (rng.uniform(0.25, 0.45) if subtle else rng.uniform(0.6, 1.5)) * falloff
        c, s = np.cos(theta), np.sin(theta)
        src_x, src_y = cx + dx * c - dy * s, cy + dx * s + dy * c
    elif mode == 1:  # bulge (k > 0) or pinch (k < 0)
        k = sign * (rng.uniform(0.15, 0.3) if subtle else rng.uniform(0.35, 0.6)) * falloff
        src_x, src_y = cx + dx * (1.0 - k), cy + dy * (1.0 - k)
    else:  # push along a direction
        amount = rng.uniform(2.0, 4.0) if subtle else rng.uniform(5.0, 12.0)
        direction = rng.uniform(0.0, 2 * np.pi)
        src_x = xx - amount * np.cos(direction) * falloff
        src_y = yy - amount * np.sin(direction) * falloff
    out = image.copy()
    out[win] = _sample(image, src_y, src_x)
    displaced = np.zeros(shape, dtype=bool)
    displaced[win] = np.hypot(src_x - xx, src_y - yy) >= 1.0
    return _result(out, ndi.binary_fill_holes(displaced))


def _blur(plane: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of an (H, W) plane; large sigmas are computed at a quarter of the resolution."""
    if sigma < 6.0 or plane.shape[0] % 4 or plane.shape[1] % 4:
        return ndi.gaussian_filter(plane, sigma)
    small = plane.reshape(plane.shape[0] // 4, 4, plane.shape[1] // 4, 4).mean(axis=(1, 3))
    small = ndi.gaussian_filter(small, sigma / 4.0, mode="nearest")
    return ndi.zoom(small, 4, order=1, mode="nearest", grid_mode=True).astype(np.float32)


def _fill_background(image: np.ndarray, fg: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Estimates the background behind the object: normalised convolution of the background plus grain.

    Args:
        image: (H, W, 3) float.
        fg: (H, W) bool object mask.
        sigma: smoothing scale in pixels.
        rng: generator (grain).

    Returns:
        (H, W, 3) float32 background estimate.
    """
    free = (~ndi.binary_dilation(fg, iterations=2)).astype(np.float32)
    if free.sum() < 50:
        free = (~fg).astype(np.float32)
    fill = np.empty_like(image, dtype=np.float32)
    for scale in (sigma, 2 * sigma, 4 * sigma):
        weight = _blur(free, scale)
        for c in range(3):
            fill[..., c] = _blur(image[..., c] * free, scale) / np.maximum(weight, 1e-6)
        if float(weight.min()) > 1e-3:
            break
    gray = image.mean(axis=-1)
    residual = gray - ndi.gaussian_filter(gray, 1.5)
    grain = float(residual[free > 0].std()) if free.any() else 0.0
    return fill + grain * _smooth_noise(fg.shape, rng, 0.8)[..., None]


def missing(
    image: np.ndarray, rng: np.random.Generator, subtle: bool = False, fg: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """A part of the object broken off: a bite at its outline replaced by the background.

    Args:
        image: (H, W, 3) float in [0, 1].
        rng: generator.
        subtle: a small chip.
        fg: (H, W) bool where the object is (required: there must be background).

    Returns:
        image (H, W, 3) float32, mask (H, W) bool (the removed part of the object).
    """
    if fg is None or fg.all() or not fg.any():
        raise ValueError("missing needs an object mask with both object and background")
    fg = fg.astype(bool)
    radius = rng.uniform(6, 11) if subtle else rng.uniform(14, 35)
    dist = ndi.distance_transform_edt(fg)
    near_edge = fg & (dist >= 0.2 * radius) & (dist <= 0.6 * radius)
    center = _pick(rng, near_edge if near_edge.any() else fg)
    alpha, _ = _blob(image.shape[:2], center, radius, rng, 0.35, 1.5)
    alpha = alpha * _soft(fg)
    out = _lerp(image, _fill_background(image, fg, max(radius, 8.0), rng), alpha)
    return _result(out, alpha > 0.5)


def misplaced(
    image: np.ndarray, rng: np.random.Generator, subtle: bool = False, fg: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """A part of the object copied (and turned) onto another place of the object.

    Of a few candidate moves the one that changes the target most is kept.

    Args:
        image: (H, W, 3) float in [0, 1].
        rng: generator.
        subtle: a small part.
        fg: (H, W) bool where the object is.

    Returns:
        image (H, W, 3) float32, mask (H, W) bool (the pasted part).
    """
    shape = image.shape[:2]
    fg = _foreground(image, fg)
    radius = rng.uniform(8, 12) if subtle else rng.uniform(14, 30)
    dist = _inset_distance(fg)
    sources = dist >= min(0.8 * radius, 0.6 * float(dist.max()))
    targets = dist >= min(0.5 * radius, 0.6 * float(dist.max()))
    best: tuple[float, np.ndarray, np.ndarray] | None = None
    for _ in range(6):
        ax, ay = _pick(rng, sources)
        bx, by = _pick(rng, targets)
        if np.hypot(ax - bx, ay - by) < 2.2 * radius:
            continue
        alpha, _ = _blob(shape, (bx, by), radius, rng, 0.3, 1.5)
        turn = np.deg2rad(rng.uniform(-40.0, 40.0))
        c, s = np.cos(turn), np.sin(turn)
        win = _window(shape, (bx, by), 2.2 * radius)
        yy, xx = (g[win] for g in _grid(shape))
        patch = image.copy()
        patch[win] = _sample(image, ay + (xx - bx) * s + (yy - by) * c, ax + (xx - bx) * c - (yy - by) * s)
        inside = alpha > 0.5
        change = float(np.abs(patch - image)[inside].mean()) if inside.any() else 0.0
        if best is None or change > best[0]:
            best = (change, alpha, patch)
    if best is None:  # the object is too small for a move: discolour it instead
        return color(image, rng, subtle, fg)
    _, alpha, patch = best
    return _result(_lerp(image, patch, alpha), alpha > 0.5)


DEFECTS: dict[str, Defect] = {
    "scratch": scratch,
    "stain": stain,
    "hole": hole,
    "color": color,
    "texture": texture,
    "deform": deform,
    "missing": missing,
    "misplaced": misplaced,
}


def apply_defect(
    kind: str,
    image: np.ndarray,
    rng: np.random.Generator,
    subtle: bool = False,
    fg: np.ndarray | None = None,
    other: np.ndarray | None = None,
    max_tries: int = 12,
) -> tuple[np.ndarray, np.ndarray]:
    """Inserts one defect of a kind, redrawing until it is visible.

    Args:
        kind: a key of :data:`DEFECTS`.
        image: (H, W, 3) float in [0, 1].
        rng: generator.
        subtle: small and/or low-contrast variant.
        fg: (H, W) bool object mask, None for textures.
        other: (H, W, 3) foreign material for the "texture" kind.
        max_tries: draws before giving up.

    Returns:
        image (H, W, 3) float32 and mask (H, W) bool, never empty.
    """
    if kind not in DEFECTS:
        raise KeyError(f"unknown defect kind {kind!r}; choose from {sorted(DEFECTS)}")
    image = np.asarray(image, dtype=np.float32)
    kwargs = {"other": other} if kind == "texture" else {}
    min_pixels = 12 if subtle else 40
    # Mean absolute change inside the mask; a warp moves structure more than it changes intensity.
    min_change = (0.02 if subtle else 0.04) if kind == "deform" else (0.03 if subtle else 0.08)
    best: tuple[float, np.ndarray, np.ndarray] | None = None
    for _ in range(max_tries):
        out, mask = DEFECTS[kind](image, rng, subtle, fg, **kwargs)
        if mask.sum() < min_pixels:
            continue
        change = float(np.abs(out - image).mean(axis=-1)[mask].mean())
        if change >= min_change:
            return out, mask
        if best is None or change > best[0]:
            best = (change, out, mask)
    if best is None:
        raise RuntimeError(f"could not place a visible {kind} defect in {max_tries} tries")
    return best[1], best[2]
