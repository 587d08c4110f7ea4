"""Tests of the synthetic anomaly generators in adbench.data.synthesis."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
import torch
from scipy import ndimage

from adbench.data.synthesis import (
    AnomalyGenerator,
    ConfettiNoise,
    CutPaste,
    FractalAnomaly,
    PerlinSmudge,
    fractal_mask,
    perlin_mask,
    perlin_noise_2d,
)
from adbench.data.synthesis.fractal import jitter_colors, rotate_patch

GENERATORS: dict[str, Callable[..., AnomalyGenerator]] = {
    "confetti": ConfettiNoise,
    "confetti_replace_blur": lambda **kw: ConfettiNoise(mode="replace", blur_sigma=1.5, **kw),
    "confetti_add_blur": lambda **kw: ConfettiNoise(blur_sigma=1.0, **kw),
    "fractal": FractalAnomaly,
    "fractal_public": lambda **kw: FractalAnomaly(jitter=0.2, rotation=(15, 75), noise=10 / 255, **kw),
    "perlin_smudge": PerlinSmudge,
    "cutpaste": CutPaste,
    "cutpaste_scar": lambda **kw: CutPaste(mode="scar", **kw),
    "cutpaste_mixed": lambda **kw: CutPaste(mode="mixed", **kw),
}
SIZES = [(96, 128), (64, 64), (41, 23)]


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def textured(h: int, w: int, seed: int = 0) -> torch.Tensor:
    """A (3, H, W) image in [0, 1] with smooth structure plus noise, so every copy/paste is visible."""
    g = gen(seed)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    base = torch.stack([yy, xx, 0.5 + 0.4 * torch.sin(9 * xx + 5 * yy)])
    return (0.8 * base + 0.2 * torch.rand(3, h, w, generator=g)).clamp(0, 1)


def coordinates(h: int, w: int) -> torch.Tensor:
    """(3, H, W) image whose channels 0/1 encode the row/column (exactly, in steps of 1/256)."""
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    return torch.stack([yy / 256.0, xx / 256.0, torch.full((h, w), 0.5)]).float()


# ------------------------------------------------------------------------------------------------------
# Contract shared by every generator.
# ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("name", list(GENERATORS))
def test_output_contract(name: str, size: tuple[int, int]) -> None:
    image = textured(*size)
    source = textured(*size, seed=7).flip(2)
    g = GENERATORS[name]()
    for seed in range(4):
        for src in (None, source):
            out, mask = g(image, gen(seed), src)
            assert out.shape == image.shape and out.dtype == image.dtype
            assert mask.shape == (1, *size) and mask.dtype == torch.float32
            assert out.min() >= 0 and out.max() <= 1
            assert set(mask.unique().tolist()) <= {0.0, 1.0}
            assert mask.sum() > 0, "an applied anomaly must have a non-empty mask"
            inside = mask[0].bool()
            # Outside the mask: bit-identical. Inside: every pixel visibly changed.
            assert torch.equal(out[:, ~inside], image[:, ~inside])
            change = (out - image).abs().amax(dim=0)
            assert (change[inside] > g.tolerance).all()
            assert torch.equal(mask[0].bool(), change > 0)


@pytest.mark.parametrize("name", list(GENERATORS))
def test_seeded(name: str) -> None:
    image, source = textured(96, 128), textured(96, 128, seed=3)
    g = GENERATORS[name]()
    out1, mask1 = g(image, gen(123), source)
    out2, mask2 = g(image, gen(123), source)
    assert torch.equal(out1, out2) and torch.equal(mask1, mask2)
    outs = [g(image, gen(s), source)[0] for s in range(4)]
    assert not any(torch.equal(outs[0], o) for o in outs[1:])


def test_global_rng_untouched() -> None:
    image = textured(64, 64)
    torch.manual_seed(0)
    expected = torch.rand(5)
    torch.manual_seed(0)
    for factory in GENERATORS.values():
        factory()(image, gen(1), image.flip(1))
    assert torch.equal(torch.rand(5), expected)


@pytest.mark.parametrize("name", list(GENERATORS))
def test_probability(name: str) -> None:
    image = textured(48, 64)
    never = GENERATORS[name](probability=0.0)
    out, mask = never(image, gen(0), image.flip(2))
    assert torch.equal(out, image) and out is not image
    assert mask.shape == (1, 48, 64) and mask.sum() == 0
    half = GENERATORS[name](probability=0.5)
    applied = [bool(half(image, gen(s))[1].any()) for s in range(40)]
    assert 8 <= sum(applied) <= 32


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError):
        CutPaste(probability=1.5)
    with pytest.raises(ValueError):
        CutPaste(mode="rotate")
    with pytest.raises(ValueError):
        ConfettiNoise(mode="mix")
    with pytest.raises(ValueError):
        PerlinSmudge(beta=(0.5, 0.2))
    with pytest.raises(ValueError):
        CutPaste()(torch.rand(32, 32), gen(0))
    with pytest.raises(ValueError):
        FractalAnomaly()(torch.rand(3, 32, 32), gen(0), torch.rand(1, 32, 32))


def test_dtype_preserved() -> None:
    image = textured(40, 56).double()
    out, mask = FractalAnomaly()(image, gen(0))
    assert out.dtype == torch.float64 and mask.dtype == torch.float64


def test_flat_image_fallback_keeps_a_mask() -> None:
    """Copying a flat image onto itself changes nothing: the image stays put, the mask is the region."""
    image = torch.full((3, 32, 48), 0.4)
    out, mask = CutPaste(jitter=0.0)(image, gen(0))
    assert torch.equal(out, image)
    assert mask.sum() > 0


# ------------------------------------------------------------------------------------------------------
# Generator specifics.
# ------------------------------------------------------------------------------------------------------


def test_confetti_add_offsets_blobs() -> None:
    image = torch.full((3, 80, 100), 0.25)
    g = ConfettiNoise(num_blobs=(2, 5), intensity=(0.5, 0.5))
    for seed in range(5):
        out, mask = g(image, gen(seed))
        inside = mask[0].bool()
        assert torch.allclose(out[:, inside], torch.full_like(out[:, inside], 0.75))
        _, n = ndimage.label(inside.numpy())
        assert 1 <= n <= 5


def test_confetti_blob_size_and_replace_colours() -> None:
    image = textured(100, 100)
    g = ConfettiNoise(num_blobs=(1, 1), blob_size=(0.1, 0.1), max_rotation=0.0, mode="replace")
    for seed in range(5):
        out, mask = g(image, gen(seed))
        inside = mask[0].bool()
        assert 60 <= inside.sum() <= 121  # one ~10x10 square (fewer if it sticks out of the image)
        colours = out[:, inside]
        assert torch.allclose(colours, colours[:, :1].expand_as(colours))


def test_fractal_fill_comes_from_source() -> None:
    image = textured(64, 96)
    source = torch.zeros(3, 32, 48)  # resized to the image size
    out, mask = FractalAnomaly(beta=(0.0, 0.0))(image, gen(0), source)
    inside = mask[0].bool()
    assert torch.equal(out[:, inside], torch.zeros_like(out[:, inside]))


def test_fractal_self_fill_is_translated_copy() -> None:
    image = coordinates(64, 96)
    g = FractalAnomaly(beta=(0.0, 0.0), flip=False)
    for seed in range(4):
        out, mask = g(image, gen(seed))
        inside = mask[0].bool()
        shift = (out[:2, inside] - image[:2, inside]) * 256  # donor offset, constant over the mask
        assert torch.allclose(shift, shift[:, :1].expand_as(shift), atol=1e-3)
        assert shift.abs().sum() > 0


def test_fractal_patch_rotation_by_90_degrees_is_rot90_and_covers_the_square() -> None:
    patch = torch.rand(3, 9, 9)
    rotated, inside = rotate_patch(patch, 90.0)
    torch.testing.assert_close(rotated, torch.rot90(patch, 1, dims=(1, 2)), atol=1e-4, rtol=0)
    assert inside.all()
    _, inside = rotate_patch(torch.rand(3, 21, 21), 45.0)
    assert not inside[0, 0] and not inside[-1, -1] and inside[10, 10]  # the corners are left empty


def test_fractal_jitter_reaches_all_three_color_changes_and_stays_in_range() -> None:
    patch = 0.25 + 0.5 * torch.rand(3, 8, 8)
    outcomes = [jitter_colors(patch, 0.2, gen(seed)) for seed in range(30)]
    assert all(o.shape == patch.shape and o.min() >= 0 and o.max() <= 1 for o in outcomes)
    channel_scaled = [o for o in outcomes if any(torch.allclose(o[c], patch[c]) for c in range(3))]
    assert channel_scaled and len(channel_scaled) < len(outcomes)  # the two-channel change, and the others
    assert torch.equal(jitter_colors(patch, 0.2, gen(7)), jitter_colors(patch, 0.2, gen(7)))


def test_fractal_noise_changes_only_pixels_inside_the_mask() -> None:
    image = textured(64, 64)
    plain = FractalAnomaly(beta=(0.0, 0.0))
    noisy = FractalAnomaly(beta=(0.0, 0.0), noise=0.2)
    changed = 0
    for seed in range(6):
        out, mask = noisy(image, gen(seed))
        reference, _ = plain(image, gen(seed))
        outside = ~mask[0].bool()
        assert torch.equal(out[:, outside], image[:, outside])
        changed += int(not torch.equal(out, reference))
    assert changed > 0  # noise is added half of the time


def test_perlin_smudge_blends_source() -> None:
    image = textured(64, 64)
    source = torch.ones(3, 64, 64)
    out, mask = PerlinSmudge(beta=(0.5, 0.5))(image, gen(2), source)
    inside = mask[0].bool()
    assert torch.allclose(out[:, inside], 0.5 * image[:, inside] + 0.5, atol=1e-6)


def test_cutpaste_standard_is_a_translated_rectangle() -> None:
    H, W = 96, 128
    image = coordinates(H, W)
    g = CutPaste(jitter=0.0, area_ratio=(0.02, 0.15))
    for seed in range(6):
        out, mask = g(image, gen(seed))
        inside = mask[0].bool()
        rows = torch.nonzero(inside.any(1)).flatten()
        cols = torch.nonzero(inside.any(0)).flatten()
        box = inside[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
        assert box.all(), "the standard patch must be a filled axis-aligned rectangle"
        assert 0.015 * H * W <= inside.sum() <= 0.16 * H * W
        shift = (out[:2, inside] - image[:2, inside]) * 256
        assert torch.allclose(shift, shift[:, :1].expand_as(shift), atol=1e-3)


def test_cutpaste_scar_is_thin() -> None:
    image = textured(128, 128)
    g = CutPaste(mode="scar", jitter=0.0, scar_width=(2, 4), scar_length=(20, 25))
    for seed in range(6):
        _, mask = g(image, gen(seed))
        area = mask.sum().item()
        assert 1 <= area <= 4 * 25 + 10
        rows = torch.nonzero(mask[0].any(1)).flatten()
        cols = torch.nonzero(mask[0].any(0)).flatten()
        assert max(rows[-1] - rows[0], cols[-1] - cols[0]) + 1 >= 12  # elongated


def test_source_of_other_size_is_resized() -> None:
    out, mask = PerlinSmudge()(textured(48, 64), gen(0), torch.rand(3, 100, 80))
    assert out.shape == (3, 48, 64) and mask.sum() > 0


# ------------------------------------------------------------------------------------------------------
# Perlin noise and masks.
# ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape,scale", [((64, 64), (4, 4)), ((96, 128), (2, 8)), ((50, 30), (3, 5))])
def test_perlin_noise_bounded_and_seeded(shape: tuple[int, int], scale: tuple[int, int]) -> None:
    n = perlin_noise_2d(shape, scale, gen(0))
    assert n.shape == shape and n.dtype == torch.float32
    assert n.abs().max() <= 1.0 + 1e-5
    assert n.std() > 0.05
    assert torch.equal(n, perlin_noise_2d(shape, scale, gen(0)))
    assert not torch.equal(n, perlin_noise_2d(shape, scale, gen(1)))


def test_perlin_noise_zero_on_lattice_and_frequency() -> None:
    n = perlin_noise_2d((64, 64), (4, 4), gen(0))
    assert torch.allclose(n[::16, ::16], torch.zeros(4, 4), atol=1e-6)  # gradient noise vanishes at nodes
    # Scaled like DRAEM's noise: it spans most of [-1, 1] (unscaled 2-D Perlin noise stays within +-0.71).
    peak = max(perlin_noise_2d((64, 64), (8, 8), gen(s)).abs().max().item() for s in range(8))
    assert 0.8 < peak <= 1.0
    smooth = torch.stack([perlin_noise_2d((64, 64), (2, 2), gen(s)) for s in range(5)])
    rough = torch.stack([perlin_noise_2d((64, 64), (16, 16), gen(s)) for s in range(5)])
    assert rough.diff(dim=-1).abs().mean() > 3 * smooth.diff(dim=-1).abs().mean()


@pytest.mark.parametrize("shape", [(256, 256), (96, 128), (64, 64), (32, 32)])
def test_perlin_mask(shape: tuple[int, int]) -> None:
    for seed in range(5):
        m = perlin_mask(shape, gen(seed))
        assert m.shape == shape and set(m.unique().tolist()) <= {0.0, 1.0}
        assert m.sum() > 0
        assert torch.equal(m, perlin_mask(shape, gen(seed)))
    assert not torch.equal(perlin_mask(shape, gen(0)), perlin_mask(shape, gen(1)))


def test_perlin_mask_threshold() -> None:
    def coverage(threshold: float) -> float:
        return sum(perlin_mask((64, 64), gen(s), threshold=threshold).mean().item() for s in range(10)) / 10

    assert coverage(-1.01) == 1.0
    assert coverage(0.0) > coverage(0.3) > coverage(0.6) > 0
    assert 0.3 < coverage(0.0) < 0.7
    # An unreachable threshold falls back to the top 1 % of the noise instead of looping forever.
    m = perlin_mask((50, 50), gen(0), threshold=2.0, max_tries=3)
    assert 1 <= m.sum() <= 0.02 * 2500


# ------------------------------------------------------------------------------------------------------
# Fractal masks.
# ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(256, 256), (96, 128), (40, 24)])
def test_fractal_mask(shape: tuple[int, int]) -> None:
    H, W = shape
    masks = [fractal_mask(shape, gen(s), scale=(0.2, 0.5), dilation=3, closing=5) for s in range(8)]
    for s, m in enumerate(masks):
        assert m.shape == shape and set(m.unique().tolist()) <= {0.0, 1.0}
        assert m.sum() > 0
        assert torch.equal(m, fractal_mask(shape, gen(s), scale=(0.2, 0.5), dilation=3, closing=5))
        rows = torch.nonzero(m.any(1)).flatten()
        cols = torch.nonzero(m.any(0)).flatten()
        # The attractor fills a box of at most half the image side, grown by the dilation (1 px per side).
        assert rows[-1] - rows[0] + 1 <= 0.5 * H + 3
        assert cols[-1] - cols[0] + 1 <= 0.5 * W + 3
        assert m.mean() < 0.3
    flat = torch.stack(masks).flatten(1)
    assert len({tuple(f.nonzero().flatten().tolist()) for f in flat}) == len(masks), "shapes should differ"


def test_fractal_mask_positions_vary_and_speed() -> None:
    centres = []
    for s in range(10):
        m = fractal_mask((256, 256), gen(s))
        centres.append(torch.nonzero(m).float().mean(0))
    assert torch.stack(centres).std(0).min() > 10  # placed all over the image
    g = gen(0)
    fractal_mask((256, 256), g)
    t0 = time.perf_counter()
    for _ in range(5):
        fractal_mask((256, 256), g)
    assert (time.perf_counter() - t0) / 5 < 0.2  # typically ~10 ms; generous for slow CI
