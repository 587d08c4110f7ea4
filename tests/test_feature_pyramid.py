"""Bringing backbone stages to one grid: area averaging down, registered bilinear up, the legacy mode."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from adbench.errors import ConfigError
from adbench.models.adtr.torch_model import ADTRModel
from adbench.models.components.feature_pyramid import resize_and_concat, resize_to


def test_area_downsampling_averages_each_cell_and_removes_aliasing():
    fine = torch.arange(16.0).reshape(1, 1, 4, 4)
    coarse = resize_to(fine, (2, 2))
    assert coarse.flatten().tolist() == [2.5, 4.5, 10.5, 12.5]  # means of the 2x2 blocks
    # A checkerboard (the finest frequency a stage can carry) averages to its mean; point sampling does not.
    board = ((torch.arange(8)[:, None] + torch.arange(8)[None, :]) % 2).float().view(1, 1, 8, 8)
    assert torch.allclose(resize_to(board, (2, 2)), torch.full((1, 1, 2, 2), 0.5))
    assert not torch.allclose(resize_to(board, (2, 2), "bilinear_corners"), torch.full((1, 1, 2, 2), 0.5))


def test_upsampling_is_registered_with_the_anomaly_map_upsampling():
    coarse = torch.randn(1, 3, 2, 2)
    up = resize_to(coarse, (4, 4))
    assert torch.equal(up, F.interpolate(coarse, size=(4, 4), mode="bilinear", align_corners=False))
    same = torch.randn(1, 2, 4, 4)
    assert resize_to(same, (4, 4)) is same


def test_concat_of_stages_at_several_strides():
    stages = [torch.randn(2, 5, 32, 32), torch.randn(2, 7, 16, 16), torch.randn(2, 3, 8, 8)]
    out = resize_and_concat(stages, 16)
    assert out.shape == (2, 15, 16, 16)
    assert torch.equal(out[:, 5:12], stages[1])
    legacy = resize_and_concat(stages, 16, "bilinear_corners")
    assert torch.equal(legacy[:, 5:12], stages[1]) and not torch.allclose(legacy[:, :5], out[:, :5])


def test_adtr_model_rejects_an_unknown_resize_mode():
    with pytest.raises(ConfigError, match="feature_resize"):
        ADTRModel(backbone="tf_efficientnet_lite0", pretrained=False, feature_size=4, hidden_dim=32, heads=4,
                  feature_resize="nearest")  # fmt: skip
