import torch

from adbench.data.synthesis import ConfettiNoise
from adbench.models.components.synthetic_batch import BatchSynthesizer


def test_batch_synthesis_keeps_normalization_and_changes_only_masked_pixels():
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    pixels = torch.rand(3, 3, 32, 32)
    normalized = (pixels - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    synthesizer = BatchSynthesizer(ConfettiNoise(), mean, std, seed=1)
    images, masks = synthesizer(normalized)
    assert images.shape == normalized.shape and masks.shape == (3, 1, 32, 32)
    assert (masks.flatten(1).sum(1) > 0).all()
    outside = masks.expand_as(images) == 0
    assert torch.allclose(images[outside], normalized[outside], atol=1e-5)
    assert not torch.allclose(images[~outside], normalized[~outside])
    again, again_masks = BatchSynthesizer(ConfettiNoise(), mean, std, seed=1)(normalized)
    assert torch.equal(again, images) and torch.equal(again_masks, masks)
