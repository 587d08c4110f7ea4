"""components/fast_layers.py: the faster layers compute exactly what the standard PyTorch layers compute."""

import pytest
import torch
from torch import nn

from adbench.models.components.fast_layers import InstanceNorm2d, MaxPool2x2, max_pool_2x2


@pytest.mark.parametrize("shape", [(2, 3, 8, 8), (1, 4, 7, 9), (3, 2, 2, 6)])
def test_max_pool_matches_torch_values_and_gradients(shape):
    torch.manual_seed(0)
    x = torch.randn(shape, requires_grad=True)
    y = x.detach().clone().requires_grad_()
    ours, theirs = MaxPool2x2()(x), nn.MaxPool2d(2)(y)
    assert torch.equal(ours, theirs)
    weights = torch.randn_like(ours)
    (ours * weights).sum().backward()
    (theirs * weights).sum().backward()
    assert torch.equal(x.grad, y.grad)


def test_max_pool_picks_the_maximum_of_each_2x2_block():
    x = torch.tensor([[1.0, 5.0, 2.0, 0.0], [3.0, 4.0, 8.0, 1.0], [0.0, 0.0, 9.0, 9.5], [7.0, 0.0, 9.0, 9.0]])
    assert max_pool_2x2(x[None, None]).squeeze().tolist() == [[5.0, 8.0], [7.0, 9.5]]


def test_instance_norm_matches_torch_values_and_gradients():
    torch.manual_seed(0)
    x = (3 * torch.randn(2, 5, 6, 7) + 2).requires_grad_()
    y = x.detach().clone().requires_grad_()
    ours, theirs = InstanceNorm2d(5)(x), nn.InstanceNorm2d(5)(y)
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)
    mean, std = ours.mean(dim=(2, 3)), ours.std(dim=(2, 3), unbiased=False)
    torch.testing.assert_close(mean, torch.zeros_like(mean), atol=1e-5, rtol=0)
    torch.testing.assert_close(std, torch.ones_like(std), atol=1e-4, rtol=0)
    weights = torch.randn_like(ours)
    (ours * weights).sum().backward()
    (theirs * weights).sum().backward()
    torch.testing.assert_close(x.grad, y.grad, atol=1e-5, rtol=1e-5)


def test_no_state_so_standard_checkpoints_load():
    assert InstanceNorm2d(8).state_dict() == {} and nn.InstanceNorm2d(8).state_dict() == {}
    assert MaxPool2x2().state_dict() == {}
