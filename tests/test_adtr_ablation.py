"""ADTR's reconstruction ablations (paper Sec. 4.4): transformer, no_attention, cnn."""

from __future__ import annotations

import pytest
import torch

from adbench.errors import ConfigError
from adbench.models import ADTR
from adbench.models.adtr.ablation_layers import ConvLayer, MLPLayer
from adbench.models.adtr.torch_model import ADTRModel, DecoderLayer, EncoderLayer
from adbench.models.adtr_plus import ADTRPlus

SMALL = dict(backbone="tf_efficientnet_lite0", pretrained=False, feature_size=6, hidden_dim=16,
             num_encoder_layers=1, num_decoder_layers=1, heads=2, mlp_dim=32, dropout=0.0)  # fmt: skip


def _changed_cells(model: ADTRModel) -> torch.Tensor:
    """(6, 6) bool: grid cells whose reconstruction changes when only the centre cell's feature changes."""
    torch.manual_seed(0)
    features = torch.randn(1, model.feature_channels, 6, 6)
    moved = features.clone()
    moved[0, :, 2, 2] += 3.0
    with torch.no_grad():
        delta = (model.reconstruct(moved) - model.reconstruct(features)).abs().amax(dim=1)[0]
    return delta > 1e-6


def test_default_is_the_papers_transformer():
    model = ADTRModel(**SMALL)
    assert model.reconstruction == "transformer" and model.query_embed is not None
    assert isinstance(model.encoder[0], EncoderLayer) and isinstance(model.decoder[0], DecoderLayer)
    assert _changed_cells(model).all()  # attention: every cell depends on every other
    assert ADTR(**SMALL).hparams.reconstruction == "transformer"


def test_no_attention_reconstructs_each_feature_from_itself_alone():
    model = ADTRModel(**SMALL, reconstruction="no_attention")
    assert model.query_embed is None  # no attention, no place for queries
    assert all(isinstance(layer, MLPLayer) for layer in [*model.encoder, *model.decoder])
    assert not any(isinstance(m, torch.nn.MultiheadAttention) for m in model.modules())
    changed = _changed_cells(model)
    assert changed[2, 2] and changed.sum() == 1


def test_cnn_mixes_a_3x3_neighbourhood_per_layer():
    model = ADTRModel(**SMALL, reconstruction="cnn")  # 2 layers: a 5x5 window
    assert all(isinstance(layer, ConvLayer) for layer in [*model.encoder, *model.decoder])
    changed = _changed_cells(model)
    window = torch.zeros(6, 6, dtype=torch.bool)
    window[0:5, 0:5] = True
    assert torch.equal(changed, window)


def test_reconstruction_is_checked_and_chained_models_must_agree(tmp_path):
    with pytest.raises(ConfigError, match="no_attention, cnn"):
        ADTRModel(**SMALL, reconstruction="mlp")
    adtr = ADTR(**SMALL, reconstruction="cnn")
    path = tmp_path / "adtr.ckpt"
    torch.save({"state_dict": adtr.state_dict(), "hyper_parameters": dict(adtr.hparams),
                "adbench": {"model_name": "adtr"}}, path)  # fmt: skip
    plus = ADTRPlus(**SMALL, reconstruction="cnn", init_from=str(path))
    assert torch.equal(plus.model.encoder[0].conv.weight, adtr.model.encoder[0].conv.weight)
    with pytest.raises(ConfigError, match="reconstruction: checkpoint 'cnn', this model 'transformer'"):
        ADTRPlus(**SMALL, init_from=str(path))
