"""Inpainting Transformer (InTra, Pirnay & Chai, "Inpainting Transformer for Anomaly Detection", 2021).

An image of H x W pixels is cut into an N x M grid of K x K patches (K = 16). A patch P(t, u) is inpainted
from the other patches of an L x L window of patches (L = 7) containing it: every patch of the window is
flattened (K*K*C values) and mapped linearly to D = 512, the patch to inpaint is *replaced* by a learned
inpaint token (its pixels never enter the network), a learned position embedding is added (``local``:
the position inside the window, L*L entries; ``global``: the position in the image grid), and the L*L
tokens pass through transformer blocks with multihead feature self-attention (MFSA: queries and keys are
computed by an MLP D -> 2D -> D/2 instead of a linear map; values stay linear). The last block's outputs
are layer-normalized, averaged over the sequence and mapped linearly to the K*K*C pixels of the patch.

Windows at inference (paper Sec. 3.5): patch (t, u) uses the window with top-left patch
``r = clamp(t - floor(L/2), 0, N - L)`` and ``s = clamp(u - floor(L/2), 0, M - L)``: centered where
possible, shifted inside the image at the borders, the patch at its relative position (t - r, u - s).
All windows of all images of a batch are gathered with index tensors and run in a few large forward
passes (``chunk`` windows each), never one patch at a time.

Choices where the paper is silent (or third-party re-implementations disagree):

* Block layout: pre-norm residual blocks (LayerNorm -> MFSA, LayerNorm -> MLP D -> 4D -> D, GELU), as in ViT;
  with ``long_skips`` the output of block i is added to the input of block n - 1 - i (U-Net-like long
  residual connections between the first and the second half of the n blocks; the middle block of an odd
  n has none).
* MFSA splits the D/2 query/key features and the D value features over the heads (D/2h and D/h per head);
  attention is scaled by the query/key head size.
* Initialization: truncated normal (std 0.02) for linear weights, zero biases; position embeddings and
  the inpaint token standard normal (std 1, as public re-implementations use). With std 0.02 the position
  signal is small beside the patch content and the network learns to route by position far more slowly.
* Grids smaller than the window (images under L*K pixels) use a window as large as the grid.
* Patch pixels are flattened in (C, K, K) order.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from adbench.models.components.gms import multiscale_gms_distance_map
from adbench.models.components.ssim import gaussian_filter, mean_filter


def patchify(images: Tensor, patch_size: int) -> Tensor:
    """Cuts images into a grid of flattened patches.

    Args:
        images: (B, C, H, W), H and W multiples of ``patch_size``.
        patch_size: K.

    Returns:
        (B, N, M, C * K * K) with N = H / K, M = W / K.
    """
    b, c, h, w = images.shape
    k = patch_size
    if h % k or w % k:
        raise ValueError(f"image size {h}x{w} is not a multiple of the patch size {k}")
    x = images.reshape(b, c, h // k, k, w // k, k).permute(0, 2, 4, 1, 3, 5)
    return x.reshape(b, h // k, w // k, c * k * k)


def unpatchify(patches: Tensor, patch_size: int, channels: int) -> Tensor:
    """Inverse of :func:`patchify`.

    Args: patches (B, N, M, C * K * K). Returns: (B, C, N * K, M * K).
    """
    b, n, m, _ = patches.shape
    k = patch_size
    x = patches.reshape(b, n, m, channels, k, k).permute(0, 3, 1, 4, 2, 5)
    return x.reshape(b, channels, n * k, m * k)


def window_origins(size: int, window: int) -> tuple[Tensor, Tensor]:
    """Inference window placement along one axis (paper Sec. 3.5).

    Args:
        size: grid length (N or M).
        window: window length L (reduced to ``size`` when the grid is shorter).

    Returns:
        ``(start, offset)``, each (size,) long: the window of patch t starts at ``start[t]`` (clamped so the
        window stays inside the grid) and the patch sits at ``offset[t] = t - start[t]`` inside it.
    """
    window = min(window, size)
    t = torch.arange(size)
    start = (t - window // 2).clamp(0, size - window)
    return start, t - start


def inference_windows(rows: int, cols: int, window: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """One window per patch of a rows x cols grid, in row-major patch order.

    Returns:
        ``(top, left, row, col)``, each (rows * cols,) long: window origin and the inpainted patch's position
        inside the window.
    """
    top, row = window_origins(rows, window)
    left, col = window_origins(cols, window)
    return (
        top.repeat_interleave(cols),
        left.repeat(rows),
        row.repeat_interleave(cols),
        col.repeat(rows),
    )


class FeatureMLP(nn.Sequential):
    """Linear -> GELU -> Linear."""

    def __init__(self, dim: int, hidden: int, out: int) -> None:
        super().__init__(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, out))


class FeatureSelfAttention(nn.Module):
    """Multihead feature self-attention (MFSA): queries and keys from an MLP D -> 2D -> D/2.

    Args:
        dim: token size D.
        heads: attention heads.
        feature_mlp: MFSA (True) or standard multihead self-attention with linear D -> D queries/keys.
    """

    def __init__(self, dim: int, heads: int, feature_mlp: bool = True) -> None:
        super().__init__()
        qk_dim = dim // 2 if feature_mlp else dim
        if dim % heads or qk_dim % heads:
            raise ValueError(
                f"embed_dim {dim} (and {qk_dim} query/key features) must divide by heads={heads}"
            )
        self.heads = heads
        if feature_mlp:
            self.query: nn.Module = FeatureMLP(dim, 2 * dim, qk_dim)
            self.key: nn.Module = FeatureMLP(dim, 2 * dim, qk_dim)
        else:
            self.query, self.key = nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.value = nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        """Args: x (W, S, D). Returns: (W, S, D)."""
        w, s, d = x.shape

        def split(t: Tensor) -> Tensor:
            return t.reshape(w, s, self.heads, -1).transpose(1, 2)

        out = F.scaled_dot_product_attention(split(self.query(x)), split(self.key(x)), split(self.value(x)))
        return self.proj(out.transpose(1, 2).reshape(w, s, d))


class Block(nn.Module):
    """Pre-norm transformer block: x + MFSA(LN(x)), then x + MLP(LN(x)).

    Args:
        dim: token size.
        heads: attention heads.
        mlp_ratio: MLP hidden size / dim.
        feature_mlp: use MFSA (else standard self-attention).
    """

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0, feature_mlp: bool = True) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = FeatureSelfAttention(dim, heads, feature_mlp)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = FeatureMLP(dim, int(dim * mlp_ratio), dim)

    def forward(self, x: Tensor) -> Tensor:
        """Args: x (W, S, D). Returns: (W, S, D)."""
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class InTraModel(nn.Module):
    """The inpainting transformer: predicts a hidden patch from the other patches of its window.

    Args:
        patch_size: K, patch side in pixels.
        window_size: L, window side in patches.
        channels: image channels C.
        embed_dim: token size D.
        depth: number of transformer blocks.
        heads: attention heads.
        mlp_ratio: MLP hidden size / D.
        position_embedding: ``local`` (position inside the window) or ``global`` (position in the grid).
        max_grid_size: largest grid side (patches) a ``global`` embedding supports.
        long_skips: U-Net-like long residual connections between the halves of the block stack.
        feature_attention: MFSA (True) or standard multihead self-attention (False).
    """

    def __init__(
        self,
        patch_size: int = 16,
        window_size: int = 7,
        channels: int = 3,
        embed_dim: int = 512,
        depth: int = 13,
        heads: int = 8,
        mlp_ratio: float = 4.0,
        position_embedding: Literal["local", "global"] = "local",
        max_grid_size: int = 32,
        long_skips: bool = True,
        feature_attention: bool = True,
    ) -> None:
        super().__init__()
        if position_embedding not in ("local", "global"):
            raise ValueError(f"position_embedding must be 'local' or 'global', got {position_embedding!r}")
        if window_size < 1 or patch_size < 1 or depth < 1:
            raise ValueError("patch_size, window_size and depth must be positive")
        self.patch_size = patch_size
        self.window_size = window_size
        self.channels = channels
        self.position_mode = position_embedding
        self.max_grid_size = max_grid_size
        self.long_skips = long_skips
        pixels = channels * patch_size * patch_size
        self.patch_embed = nn.Linear(pixels, embed_dim)
        self.inpaint_token = nn.Parameter(torch.zeros(embed_dim))
        n_positions = window_size**2 if position_embedding == "local" else max_grid_size**2
        self.position = nn.Parameter(torch.zeros(n_positions, embed_dim))
        self.blocks = nn.ModuleList(
            Block(embed_dim, heads, mlp_ratio, feature_attention) for _ in range(depth)
        )
        self.norm = nn.LayerNorm(embed_dim)
        self.head = nn.Linear(embed_dim, pixels)
        self._init_weights()

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)
        nn.init.normal_(self.inpaint_token)
        nn.init.normal_(self.position)

    # ---------------------------------------------------------------------------------------------- windows
    def sample_windows(
        self,
        count: int,
        rows: int,
        cols: int,
        device: torch.device | str = "cpu",
        mode: Literal["uniform", "inference"] = "uniform",
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Random training windows.

        Args:
            count: number of windows.
            rows: grid rows N.
            cols: grid columns M.
            device: device of the returned indices.
            mode: ``uniform``: window origin uniform over the grid, hidden patch uniform inside the window;
                ``inference``: hidden patch uniform over the grid, window placed as at inference (centered
                where possible), so training sees the inference distribution of hidden positions.

        Returns:
            ``(top, left, row, col)``, each (count,) long.
        """
        if mode == "inference":
            top, row = (t.to(device) for t in window_origins(rows, self.window_size))
            left, col = (t.to(device) for t in window_origins(cols, self.window_size))
            t = torch.randint(0, rows, (count,), device=device)
            u = torch.randint(0, cols, (count,), device=device)
            return top[t], left[u], row[t], col[u]
        if mode != "uniform":
            raise ValueError(f"window sampling must be 'uniform' or 'inference', got {mode!r}")
        wh, ww = min(self.window_size, rows), min(self.window_size, cols)
        return (
            torch.randint(0, rows - wh + 1, (count,), device=device),
            torch.randint(0, cols - ww + 1, (count,), device=device),
            torch.randint(0, wh, (count,), device=device),
            torch.randint(0, ww, (count,), device=device),
        )

    def embed(self, patches: Tensor) -> Tensor:
        """Args: patches (B, N, M, C*K*K). Returns: tokens (B, N, M, D)."""
        return self.patch_embed(patches)

    def encode(self, x: Tensor) -> Tensor:
        """Runs the block stack (with the long skips). Args: x (W, S, D). Returns: (W, S, D)."""
        n = len(self.blocks)
        half = n // 2 if self.long_skips else 0
        skips: list[Tensor] = []
        for i, block in enumerate(self.blocks):
            if i >= n - half:
                x = x + skips.pop()
            x = block(x)
            if i < half:
                skips.append(x)
        return x

    def inpaint(
        self, tokens: Tensor, image: Tensor, top: Tensor, left: Tensor, row: Tensor, col: Tensor
    ) -> Tensor:
        """Inpaints one hidden patch per window.

        Args:
            tokens: (B, N, M, D) embedded patches of the images.
            image: (W,) image index of each window.
            top: (W,) first grid row of each window.
            left: (W,) first grid column of each window.
            row: (W,) row of the hidden patch inside its window.
            col: (W,) column of the hidden patch inside its window.

        Returns:
            (W, C*K*K) predicted pixels of the hidden patches.
        """
        _, n, m, _ = tokens.shape
        wh, ww = min(self.window_size, n), min(self.window_size, m)
        device = tokens.device
        ar_h, ar_w = torch.arange(wh, device=device), torch.arange(ww, device=device)
        rows = top[:, None] + ar_h  # (W, wh)
        cols = left[:, None] + ar_w  # (W, ww)
        x = tokens[image[:, None, None], rows[:, :, None], cols[:, None, :]]  # (W, wh, ww, D)
        hidden = (ar_h[None, :, None] == row[:, None, None]) & (ar_w[None, None, :] == col[:, None, None])
        x = torch.where(hidden[..., None], self.inpaint_token.to(x.dtype), x)
        if self.position_mode == "local":
            pos = self.position[ar_h[:, None] * self.window_size + ar_w[None, :]]  # (wh, ww, D)
        else:
            if n > self.max_grid_size or m > self.max_grid_size:
                raise ValueError(
                    f"a {n}x{m} patch grid exceeds max_grid_size={self.max_grid_size} of the global position "
                    "embedding; raise max_grid_size or use smaller images"
                )
            pos = self.position[rows[:, :, None] * self.max_grid_size + cols[:, None, :]]  # (W, wh, ww, D)
        x = (x + pos).flatten(1, 2)
        return self.head(self.norm(self.encode(x)).mean(dim=1))

    def reconstruct(self, images: Tensor, chunk: int = 256) -> Tensor:
        """Inpaints every patch of every image, each from its inference window.

        Args:
            images: (B, C, H, W), H and W multiples of K.
            chunk: windows per forward pass.

        Returns:
            (B, C, H, W) the image assembled from the inpainted patches.
        """
        patches = patchify(images, self.patch_size)
        b, n, m, pixels = patches.shape
        tokens = self.embed(patches)
        top, left, row, col = (
            t.to(images.device).repeat(b) for t in inference_windows(n, m, self.window_size)
        )
        image = torch.arange(b, device=images.device).repeat_interleave(n * m)
        predictions = [
            self.inpaint(tokens, *parts)
            for parts in zip(*(t.split(chunk) for t in (image, top, left, row, col)), strict=True)
        ]
        return unpatchify(torch.cat(predictions).reshape(b, n, m, pixels), self.patch_size, self.channels)


class GMSAnomalyMap(nn.Module):
    """InTra's anomaly map: smoothed multi-scale GMS distance, minus the mean training map, squared.

    ``difference(image, reconstruction)`` is the channel-mean ``1 - GMS`` at each scale, upsampled bilinearly
    to the image size and averaged over the scales, then mean-filtered and Gaussian-filtered. ``forward``
    returns ``(difference - mean_map) ** 2`` where ``mean_map`` (a buffer, saved in checkpoints) is the mean
    difference of the normal training images; before it is fitted the mean is taken as 0. The buffer
    ``mean_map_scales`` records the scales it was fitted at; loading a mean map fitted at other scales drops it
    (with a warning) so that it is refitted.

    Args:
        scales: GMS scales (1 = full resolution); the paper's map uses 1/2 and 1/4.
        mean_filter_size: side of the mean filter (odd; 1 disables it).
        gaussian_sigma: sigma of the Gaussian filter in pixels (0 disables it).
    """

    def __init__(
        self,
        scales: Sequence[float] = (0.5, 0.25),
        mean_filter_size: int = 21,
        gaussian_sigma: float = 4.0,
    ) -> None:
        super().__init__()
        self.scales = tuple(float(s) for s in scales)
        self.mean_filter_size = mean_filter_size
        self.gaussian_sigma = gaussian_sigma
        self.register_buffer("mean_map", torch.zeros(0))
        self.register_buffer("mean_map_scales", torch.zeros(0))  # the scales the mean map was fitted at

    @property
    def fitted(self) -> bool:
        """Whether the mean training map is set."""
        return self.mean_map.numel() > 0

    def set_mean_map(self, mean_map: Tensor) -> None:
        """Stores the mean training map (1, 1, H, W), tagged with the scales it was computed at."""
        self.mean_map = mean_map
        self.mean_map_scales = torch.tensor(self.scales, device=mean_map.device)

    def difference(self, image: Tensor, reconstruction: Tensor) -> Tensor:
        """Args: image, reconstruction (B, C, H, W). Returns: smoothed GMS distance (B, 1, H, W)."""
        distance = multiscale_gms_distance_map(image, reconstruction, self.scales)
        if self.mean_filter_size > 1:
            distance = mean_filter(distance, self.mean_filter_size)
        if self.gaussian_sigma > 0:
            distance = gaussian_filter(distance, self.gaussian_sigma)
        return distance

    def forward(self, image: Tensor, reconstruction: Tensor) -> Tensor:
        """Args: image, reconstruction (B, C, H, W). Returns: anomaly map (B, 1, H, W)."""
        distance = self.difference(image, reconstruction)
        if not self.fitted:
            return distance**2
        mean = self.mean_map.to(distance.dtype)
        if mean.shape[-2:] != distance.shape[-2:]:
            mean = F.interpolate(mean, size=distance.shape[-2:], mode="bilinear", align_corners=False)
        return (distance - mean) ** 2

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        # The mean map's size depends on the image size: take the checkpoint's shape. A mean map fitted at
        # other GMS scales (or by a version that did not record them) does not match this scorer's maps:
        # drop it, so the model refits it at test start instead of scoring against the wrong baseline.
        key, scales_key = prefix + "mean_map", prefix + "mean_map_scales"
        if key in state_dict:
            saved = state_dict.setdefault(scales_key, torch.zeros(0))  # older checkpoints lack the record
            fitted_here = saved.shape == (len(self.scales),) and torch.allclose(
                saved.float().cpu(), torch.tensor(self.scales)
            )
            if state_dict[key].numel() > 0 and not fitted_here:
                warnings.warn(
                    f"InTra: the checkpoint's mean training map was fitted at GMS scales {tuple(saved.tolist())},"
                    f" this model scores at {self.scales}; the mean map is refitted from the training images at "
                    "test start",
                    stacklevel=2,
                )
                state_dict[key] = state_dict[scales_key] = torch.zeros(0)
            self.mean_map = torch.empty_like(state_dict[key], device=self.mean_map.device)
            self.mean_map_scales = torch.empty_like(state_dict[scales_key], device=self.mean_map.device)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
