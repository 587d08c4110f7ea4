import math

import lightning as L
import pytest
import torch
import torch.nn.functional as F

from adbench.data import MVTecAD
from adbench.data.batch import Batch
from adbench.models.components.segmentation_losses import binary_cross_entropy, dice_loss, focal_loss
from adbench.models.fractalad import FractalAD, FractalADModel
from adbench.models.fractalad.loss import FractalADLoss, distillation_loss
from adbench.models.fractalad.torch_model import SegmentationHead, attend, cosine_attention
from tests.conftest import make_mvtec_tree


def batch_of(image: torch.Tensor) -> Batch:
    n = image.shape[0]
    return Batch(image, torch.zeros(n, dtype=torch.long), torch.zeros(n, 1, *image.shape[-2:]), list("abcdefgh"[:n]),
                 torch.arange(n))  # fmt: skip


def small_fractalad(**kwargs) -> FractalAD:
    args = dict(backbone="tf_efficientnet_lite0", pretrained=False, mask_dilation=3)
    return FractalAD(**{**args, **kwargs})


def test_shapes_of_features_head_and_maps():
    model = FractalADModel(backbone="tf_efficientnet_lite0", pretrained=False)
    out = model(torch.randn(2, 3, 64, 48))
    assert [f.shape[1] for f in out.teacher] == [24, 40, 112, 320]
    assert [tuple(f.shape[-2:]) for f in out.student] == [(16, 12), (8, 6), (4, 3), (2, 2)]
    assert out.logits.shape == (2, 1, 64, 48)
    assert ((out.anomaly_map > 0) & (out.anomaly_map < 1)).all()
    head = SegmentationHead([64, 128, 256, 512])
    logits = head([torch.randn(1, c, 64 // 2**i, 64 // 2**i) for i, c in enumerate((64, 128, 256, 512))])
    assert logits.shape == (1, 1, 64, 64)


def test_paper_configuration_resnet18():
    model = FractalADModel(backbone="resnet18", pretrained=False)
    assert model.teacher.channels == [64, 128, 256, 512] and model.teacher.strides == [4, 8, 16, 32]
    assert sum(p.numel() for p in model.student.parameters()) == sum(
        p.numel() for p in model.teacher.parameters()
    )
    # Backbones are plain timm models: no trainable parameter outside the student and the head.
    trainable = {n.split(".")[0] for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"student", "head"}


def test_cosine_attention_known_values():
    teacher = torch.tensor([1.0, 0.0]).view(1, 2, 1, 1).expand(1, 2, 1, 3)
    student = torch.tensor([[1.0, -2.0, 0.0], [0.0, 0.0, 5.0]]).view(1, 2, 1, 3)
    attention = cosine_attention(teacher, student)
    assert attention.shape == (1, 1, 1, 3)
    assert torch.allclose(attention.flatten(), torch.tensor([0.0, 1.0, 0.5]))
    student = student.clone().requires_grad_(True)
    (attended,) = attend([teacher], [student])
    assert not attended.requires_grad
    assert torch.allclose(attended, attention * student.detach())


def test_segmentation_loss_does_not_reach_the_student():
    torch.manual_seed(0)
    model = FractalADModel(backbone="tf_efficientnet_lite0", pretrained=False)
    clean = torch.randn(2, 3, 64, 64)
    out = model.training_forward(clean, clean + 0.1 * torch.randn_like(clean))
    F.binary_cross_entropy_with_logits(out.logits, torch.zeros_like(out.logits)).backward()
    assert all(p.grad is None for p in model.student.parameters())
    assert all(p.grad is not None for p in model.head.parameters())
    distillation_loss(out.teacher_clean, out.student_clean).backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.student.parameters())


def test_losses_known_values():
    logits = torch.tensor([[[[20.0, -20.0], [-20.0, 20.0]]]])
    mask = torch.tensor([[[[1.0, 0.0], [0.0, 1.0]]]])
    assert dice_loss(logits, mask, smooth=0.0) == pytest.approx(0.0, abs=1e-6)
    assert dice_loss(-logits, mask, smooth=0.0) == pytest.approx(1.0, abs=1e-6)
    assert dice_loss(torch.zeros(1, 1, 2, 2), mask, smooth=1.0) == pytest.approx(
        1 - (2 * 1.0 + 1) / (2 + 2 + 1)
    )
    assert binary_cross_entropy(torch.zeros(1, 1, 2, 2), mask) == pytest.approx(math.log(2))
    raw = torch.randn(2, 1, 4, 4)
    target = (torch.rand(2, 1, 4, 4) > 0.5).float()
    assert torch.allclose(focal_loss(raw, target, gamma=0.0), binary_cross_entropy(raw, target), atol=1e-6)
    two_class = torch.randn(2, 2, 4, 4)
    index = (torch.rand(2, 4, 4) > 0.5).long()
    assert torch.allclose(
        focal_loss(two_class, index, gamma=0.0), F.cross_entropy(two_class, index), atol=1e-6
    )
    p = torch.sigmoid(raw)
    expected = -(target * (1 - p) ** 2 * p.log() + (1 - target) * p**2 * (1 - p).log()).mean()
    assert torch.allclose(focal_loss(raw, target, gamma=2.0), expected, atol=1e-6)
    features = [torch.randn(2, 8, 4, 4), torch.randn(2, 16, 2, 2)]
    assert distillation_loss(features, features) == pytest.approx(0.0, abs=1e-6)
    assert distillation_loss(features, [-f for f in features]) == pytest.approx(4.0, abs=1e-5)
    losses = FractalADLoss(use_kd=True)(logits, mask, features, [-f for f in features])
    assert losses["loss"] == pytest.approx((losses["bce"] + losses["dice"] + losses["kd"]).item())
    assert "kd" not in FractalADLoss(use_kd=False)(logits, mask)


def test_image_score_as_configured():
    anomaly_map = torch.zeros(2, 1, 4, 4)
    anomaly_map[0, 0, 0, 0] = 1.0
    anomaly_map[1] = 0.25
    assert torch.allclose(small_fractalad().image_score(anomaly_map), torch.tensor([1 / 16, 0.25]))
    assert torch.allclose(small_fractalad(score="max").image_score(anomaly_map), torch.tensor([1.0, 0.25]))
    model = small_fractalad().eval()
    out = model.predict_batch(batch_of(torch.randn(2, 3, 64, 64)))
    assert out["anomaly_map"].shape == (2, 1, 64, 64)
    assert torch.allclose(out["pred_score"], out["anomaly_map"].flatten(1).mean(1))


def test_synthetic_anomalies_fill_from_same_or_other_image_and_dilate():
    # Two flat images: a patch of the same image changes nothing, a patch of the other one does.
    gray = torch.stack([torch.full((3, 64, 64), -0.6), torch.full((3, 64, 64), 0.8)])
    plain = {"fractal_jitter": 0.0, "fractal_noise": 0.0}  # no color change of the pasted patch
    same = small_fractalad(fill_from="same", mask_dilation=1, **plain)
    augmented, mask = same.synthesize(gray)
    assert torch.allclose(augmented, gray, atol=1e-5) and (mask.flatten(1).sum(1) > 0).all()
    # The public generator's color change makes even a same-image patch of a flat image visible.
    augmented, mask = small_fractalad(fill_from="same", mask_dilation=1).synthesize(gray)
    assert (mask.flatten(1).sum(1) > 0).all() and not torch.allclose(augmented, gray, atol=1e-2)
    other = small_fractalad(fill_from="other", mask_dilation=1, **plain)
    augmented, mask = other.synthesize(gray)
    inside = mask[0, 0] > 0
    assert torch.allclose(augmented[0, :, inside], torch.tensor(0.8), atol=1e-2)
    assert torch.allclose(augmented[0, :, ~inside], gray[0, :, ~inside], atol=1e-5)  # de-/re-normalized
    dilated = small_fractalad(fill_from="other", mask_dilation=7, **plain).synthesize(gray)[1]
    assert torch.equal(dilated, F.max_pool2d(mask, 7, stride=1, padding=3))
    # Seeded: a fresh module with the same seed draws the same anomalies.
    again = small_fractalad(fill_from="other", mask_dilation=1, **plain).synthesize(gray)[1]
    assert torch.equal(again, mask)


def test_one_training_step_reduces_loss():
    torch.manual_seed(0)
    model = small_fractalad()
    batch = batch_of(torch.randn(4, 3, 64, 64))
    optimizer = model.configure_optimizers()
    model.train()

    def loss() -> torch.Tensor:
        model._synthesizers.clear()  # the same anomalies every call
        return model.compute_loss(batch)["loss"]

    first = loss()
    optimizer.zero_grad()
    first.backward()
    optimizer.step()
    assert loss() < first


def test_without_distillation_only_the_head_trains():
    model = small_fractalad(use_kd=False)
    assert model.model.student is None
    optimizer = model.configure_optimizers()
    assert optimizer.param_groups[0]["weight_decay"] == pytest.approx(1e-2)
    assert sum(p.numel() for g in optimizer.param_groups for p in g["params"]) == sum(
        p.numel() for p in model.model.head.parameters()
    )
    losses = model.compute_loss(batch_of(torch.randn(2, 3, 64, 64)))
    assert set(losses) == {"loss", "bce", "dice"}
    assert small_fractalad().configure_optimizers().param_groups[0]["weight_decay"] == pytest.approx(1e-3)


def test_student_starts_random_or_from_the_teacher():
    model = FractalADModel(backbone="tf_efficientnet_lite0", pretrained=True)
    teacher, student = model.teacher.model.state_dict(), model.student.model.state_dict()
    assert not torch.equal(teacher["conv_stem.weight"], student["conv_stem.weight"])
    model = FractalADModel(backbone="tf_efficientnet_lite0", pretrained=True, student_pretrained=True)
    student = model.student.model.state_dict()
    assert all(torch.equal(v, student[k]) for k, v in model.teacher.model.state_dict().items())


def test_teacher_unchanged_by_training(tmp_path):
    L.seed_everything(0)
    root = make_mvtec_tree(tmp_path, category="bottle", size=32, n_train=8, n_test_good=2, n_per_defect=1)
    dm = MVTecAD(root=root, category="bottle", image_size=32, batch_size=4, num_workers=0, val_split=0.25,
                 mean=(0.5,) * 3, std=(0.5,) * 3)  # fmt: skip
    model = small_fractalad(pretrained=True, lr=1e-2)
    teacher = {k: v.clone() for k, v in model.model.teacher.state_dict().items()}  # weights and BN buffers
    student = {k: v.clone() for k, v in model.model.student.state_dict().items()}
    trainer = L.Trainer(max_epochs=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, default_root_dir=tmp_path, callbacks=[])  # fmt: skip
    trainer.fit(model, datamodule=dm)
    assert all(torch.equal(v, model.model.teacher.state_dict()[k]) for k, v in teacher.items())
    assert not all(torch.equal(v, model.model.student.state_dict()[k]) for k, v in student.items())
    assert trainer.callback_metrics["val/loss"].isfinite()
