import numpy as np
import pytest
import torch
import torch.nn.functional as F

from adbench.errors import WeightsError
from adbench.models.components.backbone import FeatureExtractor, load_state_dict_file


def test_lite0_offline_weights_are_real_imagenet_weights():
    """The pip package weights classify skimage's cat photo as a cat (ImageNet 281-285)."""
    import timm
    from skimage import data

    from adbench.models.components.backbone import _lite_package_weights, _match_state_dict

    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    model.load_state_dict(
        _match_state_dict(model.state_dict(), _lite_package_weights("tf_efficientnet_lite0"), "lite0")
    )
    image = torch.tensor(np.asarray(data.chelsea())).permute(2, 0, 1)[None].float() / 255
    image = (F.interpolate(image, size=(224, 224), mode="bilinear") - 0.5) / 0.5
    with torch.no_grad():
        assert 281 <= int(model.eval()(image).argmax()) <= 285


def test_feature_extractor_is_frozen_and_returns_stages():
    extractor = FeatureExtractor("tf_efficientnet_lite0", pretrained=True)
    assert extractor.channels == [16, 24, 40, 112, 320]
    assert extractor.mean_std == ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    extractor.train()
    assert not extractor.model.training
    assert not any(p.requires_grad for p in extractor.parameters())
    features = extractor(torch.randn(2, 3, 64, 64))
    assert [f.shape[-1] for f in features] == [32, 16, 8, 4, 2]


def test_missing_offline_weights_say_what_to_do():
    with pytest.raises(WeightsError, match=r"efficientnet_b4.*weights_path.*pretrained: false"):
        FeatureExtractor("efficientnet_b4", pretrained=True)


def test_weights_path_roundtrip_and_bad_files(tmp_path):
    source = FeatureExtractor("resnet18", pretrained=False)
    import timm

    full = timm.create_model("resnet18", pretrained=False)
    full.load_state_dict(source.model.state_dict(), strict=False)
    torch.save(full.state_dict(), tmp_path / "resnet18.pth")
    loaded = FeatureExtractor("resnet18", pretrained=True, weights_path=str(tmp_path / "resnet18.pth"))
    assert torch.equal(loaded.model.conv1.weight, source.model.conv1.weight)
    with pytest.raises(WeightsError, match="does not exist"):
        load_state_dict_file(tmp_path / "missing.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match=r"junk\.pth could not be read"):
        load_state_dict_file(tmp_path / "junk.pth")
    with pytest.raises(WeightsError, match="tensors"):
        FeatureExtractor(
            "tf_efficientnet_lite0", pretrained=True, weights_path=str(tmp_path / "resnet18.pth")
        )
