"""Classification head, FinetuneModel (linear probe) and the head factory."""

from __future__ import annotations

import pytest
import torch

from echocare.models.heads import ClassificationHead, FinetuneModel, create_head, list_heads
from echocare.models.heads.common import parse_feature_info


def bright_dark_batch(n: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    labels = torch.arange(n) % 2
    images = torch.rand(n, 1, 64, 64, generator=g) * 0.5 + 0.3 * labels.view(n, 1, 1, 1)
    return images, labels


def test_parse_feature_info_variants(tiny_backbone):
    spec = parse_feature_info([{"num_chs": 8, "reduction": 4}, {"num_chs": 16, "reduction": 8}])
    assert spec.channels == (8, 16) and spec.reductions == (4, 8)
    assert parse_feature_info([(8, 4), (16, 8)]) == spec
    assert parse_feature_info(tiny_backbone().feature_info).reductions == (4, 8, 16, 32)
    with pytest.raises(ValueError, match="strictly increase"):
        parse_feature_info([(8, 8), (16, 4)])
    with pytest.raises(ValueError, match="num_chs"):
        parse_feature_info([{"channels": 8}])


def test_classification_shapes_and_predict(tiny_backbone):
    backbone = tiny_backbone()
    model = FinetuneModel(backbone, create_head("classification", backbone.feature_info, num_classes=3))
    out = model(torch.rand(2, 1, 64, 64))
    assert out["logits"].shape == (2, 3) and out["embedding"].shape == (2, 192)
    pred = model.head.predict(out)
    assert pred["probs"].shape == (2, 3) and torch.allclose(pred["probs"].sum(-1), torch.ones(2))
    assert pred["label"].shape == (2,)


def test_full_finetune_loss_falls_and_every_param_has_grad(tiny_backbone, train):
    backbone = tiny_backbone()
    model = FinetuneModel(backbone, ClassificationHead(backbone.feature_info, num_classes=2, dropout=0.1))
    images, labels = bright_dark_batch()
    losses = train(model, images, {"label": labels})
    assert losses[-1] < 0.7 * losses[0]
    model.zero_grad()
    model.loss(model(images), {"label": labels})["loss"].backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_linear_probe_freezes_backbone(tiny_backbone, train):
    backbone = tiny_backbone()
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    model = FinetuneModel(backbone, ClassificationHead(backbone.feature_info, num_classes=2), freeze_backbone=True)
    model.train()
    assert not model.backbone.training and model.head.training
    images, labels = bright_dark_batch()
    out = model(images)
    assert not out["embedding"].requires_grad  # backbone ran without a graph
    model.loss(out, {"label": labels})["loss"].backward()
    assert all(p.grad is None and not p.requires_grad for p in model.backbone.parameters())
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.head.parameters())
    losses = train(model, images, {"label": labels}, steps=30, lr=1e-2)
    assert losses[-1] < losses[0]
    for k, v in backbone.state_dict().items():
        assert torch.equal(v, before[k]), k
    model.freeze_backbone(False)
    model.train()
    assert model.backbone.training and all(p.requires_grad for p in model.backbone.parameters())


def test_binary_single_logit_and_label_errors(tiny_backbone):
    backbone = tiny_backbone()
    model = FinetuneModel(backbone, ClassificationHead(backbone.feature_info, num_classes=1))
    images, labels = bright_dark_batch(4)
    out = model(images)
    assert out["logits"].shape == (4, 1)
    res = model.loss(out, {"label": labels})
    assert res["loss"].ndim == 0 and 0.0 <= float(res["logs"]["acc"]) <= 1.0
    probs = model.head.predict(out)["probs"]
    assert probs.shape == (4, 1) and ((probs >= 0) & (probs <= 1)).all()
    with pytest.raises(ValueError, match="class labels"):
        model.loss(out, {"label": torch.tensor([0, 1, 2, 0])})
    with pytest.raises(KeyError, match="label"):
        model.loss(out, {"y": labels})


def test_factory_and_bad_inputs(tiny_backbone):
    assert set(list_heads()) == {
        "classification", "segmentation", "detection", "landmarks", "regression", "video_classification",
        "enhancement", "report_generation",
    }
    backbone = tiny_backbone()
    with pytest.raises(ValueError, match="unknown head task"):
        create_head("captioning", backbone.feature_info)
    with pytest.raises(TypeError, match="forward_intermediates"):
        FinetuneModel(torch.nn.Linear(2, 2), ClassificationHead(backbone.feature_info, num_classes=2))
    model = FinetuneModel(backbone, ClassificationHead(backbone.feature_info, num_classes=2))
    with pytest.raises(ValueError, match="images should be"):
        model(torch.rand(64, 64))


def test_echocare_encoder_contract():
    """The heads run on echocare's own encoder too, once it is available."""
    models = pytest.importorskip("echocare.models")
    if not hasattr(models, "create_encoder"):
        pytest.skip("echocare.models.create_encoder not available")
    encoder = models.create_encoder("echocare_swin_debug", in_chans=1, img_size=64)
    model = FinetuneModel(encoder, create_head("segmentation", encoder.feature_info, num_classes=3, feature_size=8))
    assert model(torch.rand(1, 1, 64, 64))["logits"].shape == (1, 3, 64, 64)
