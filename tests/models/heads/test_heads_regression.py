"""Regression head: one image or a frame sequence with temporal attention pooling."""

from __future__ import annotations

import pytest
import torch

from echocare.models.heads import FinetuneModel, RegressionHead, TemporalAttentionPool


def test_image_regression_learns_intensity(tiny_backbone, train, assert_all_head_grads):
    g = torch.Generator().manual_seed(4)
    level = torch.rand(8, generator=g)
    images = torch.rand(8, 1, 64, 64, generator=g) * 0.3 + 0.6 * level.view(8, 1, 1, 1)
    targets = {"value": 20 + 50 * level}  # EF-like range, standardised inside the head
    model = FinetuneModel(tiny_backbone(), RegressionHead(
        [{"num_chs": c, "reduction": r} for c, r in [(24, 4), (48, 8), (96, 16), (192, 32)]],
        embed_dim=32, target_mean=45.0, target_std=15.0))
    out = model(images)
    assert out["value"].shape == (8, 1) and torch.allclose(out["value"], out["normalized"] * 15 + 45)
    losses = train(model, images, targets)
    assert losses[-1] < 0.7 * losses[0], losses
    res = model.loss(model(images), targets)
    assert float(res["logs"]["mae"]) < 15.0
    assert model.predict(images)["value"].shape == (8,)
    assert_all_head_grads(model, images, {"value": torch.full((8,), 500.0)})
    with pytest.raises(ValueError, match="temporal=True"):
        model(torch.rand(2, 3, 1, 64, 64))
    with pytest.raises(ValueError, match="regression targets"):
        model.loss(out, {"value": torch.rand(8, 2)})


def test_sequence_regression_with_temporal_attention(tiny_backbone, train, assert_all_head_grads):
    g = torch.Generator().manual_seed(5)
    b, t = 4, 4
    # the target is how much brighter the last frames are than the first ones (order matters)
    ramp = torch.tensor([0.0, 0.4, 0.0, 0.4])
    frames = torch.rand(b, t, 1, 64, 64, generator=g) * 0.3
    frames = frames + ramp.view(b, 1, 1, 1, 1) * torch.linspace(0, 1, t).view(1, t, 1, 1, 1)
    targets = {"value": 50 + 25 * ramp / 0.4}
    backbone = tiny_backbone()
    model = FinetuneModel(backbone, RegressionHead(backbone.feature_info, temporal=True, embed_dim=32,
                                                   num_heads=4, target_mean=60.0, target_std=15.0))
    out = model(frames)
    assert out["value"].shape == (b, 1) and out["frame_weights"].shape == (b, t)
    assert torch.allclose(out["frame_weights"].sum(-1), torch.ones(b), atol=1e-5)
    losses = train(model, frames, targets, lr=3e-4)
    assert losses[-1] < 0.7 * losses[0], losses
    assert_all_head_grads(model, frames, {"value": torch.full((b,), 500.0)})
    with pytest.raises(ValueError, match=r"\(B, T, C, H, W\)"):
        model(frames[:, 0])


def test_temporal_pool_is_order_aware_and_validates():
    torch.manual_seed(0)
    pool = TemporalAttentionPool(8, dim=16, num_heads=2, depth=1).eval()
    x = torch.randn(1, 5, 8)
    a, w = pool(x)
    b, _ = pool(x.flip(1))
    assert a.shape == (1, 16) and w.shape == (1, 5)
    assert not torch.allclose(a, b, atol=1e-4)  # sinusoidal positions make order matter
    with pytest.raises(ValueError, match="divisible"):
        TemporalAttentionPool(8, dim=10, num_heads=4)
    with pytest.raises(ValueError, match=r"\(B, T, D\)"):
        pool(torch.randn(5, 8))
