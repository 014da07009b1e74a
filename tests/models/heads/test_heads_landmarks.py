"""Landmark heatmap head, Gaussian targets and sub-pixel decoding."""

from __future__ import annotations

import pytest
import torch

from echocare.losses.landmarks import heatmap_mse_loss
from echocare.models.heads import FinetuneModel, LandmarkHead, decode_heatmaps, render_gaussian_heatmaps


@pytest.mark.parametrize("stride", [1, 4])
def test_taylor_decoding_recovers_subpixel_location(stride):
    points = torch.tensor([[[23.37, 40.81], [10.6, 7.25]]])  # (1, L=2, 2) (x, y), non-integer
    heat = render_gaussian_heatmaps(points, (64 // stride, 64 // stride), stride, sigma=2.0)
    assert heat.shape == (1, 2, 64 // stride, 64 // stride) and float(heat.max()) <= 1.0
    decoded, scores = decode_heatmaps(heat, stride, "taylor")
    assert decoded.shape == (1, 2, 2) and scores.shape == (1, 2)
    assert (decoded - points).abs().max() < 0.1
    # plain argmax is off by more than the tolerance on at least one axis
    coarse, _ = decode_heatmaps(heat, stride, "argmax")
    assert (coarse - points).abs().max() > 0.1


def test_centroid_and_border_and_errors():
    points = torch.tensor([[[23.37, 40.81]]])
    heat = render_gaussian_heatmaps(points, (64, 64), 1, sigma=1.5)
    soft, _ = decode_heatmaps(heat, 1, "centroid", radius=5)
    assert (soft - points).abs().max() < 0.1
    # a peak on the border: no refinement there, but the argmax survives
    edge = render_gaussian_heatmaps(torch.tensor([[[0.0, 5.0]]]), (16, 16), 1, sigma=1.0)
    pts, _ = decode_heatmaps(edge, 1, "taylor")
    assert torch.allclose(pts, torch.tensor([[[0.0, 5.0]]]), atol=1e-4)
    with pytest.raises(ValueError, match="unknown heatmap decoding"):
        decode_heatmaps(heat, 1, "mean")
    with pytest.raises(ValueError, match="should be"):
        heatmap_mse_loss(heat, heat, torch.ones(2, 2))


def test_landmark_head_trains_and_every_param_has_grad(tiny_backbone, train, assert_all_head_grads):
    g = torch.Generator().manual_seed(2)
    n = 4
    yy, xx = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    centers = torch.rand(n, 2, generator=g) * 30 + 17  # (B, 2) (x, y)
    images = torch.rand(n, 1, 64, 64, generator=g) * 0.2
    for i, (cx, cy) in enumerate(centers.tolist()):
        images[i, 0][(xx - cx) ** 2 + (yy - cy) ** 2 < 36] += 0.7
    backbone = tiny_backbone()
    model = FinetuneModel(backbone, LandmarkHead(backbone.feature_info, num_landmarks=2, channels=32))
    points = torch.stack([centers, centers + 4.0], dim=1)  # (B, 2, 2): disk centre and an offset point
    visible = torch.tensor([[1.0, 1.0], [1.0, 0.0], [1.0, 1.0], [1.0, 1.0]])
    targets = {"points": points, "visible": visible}
    out = model(images)
    assert out["heatmaps"].shape == (n, 2, 16, 16)
    losses = train(model, images, targets)
    assert losses[-1] < 0.7 * losses[0], losses
    assert "mre_px" in model.loss(model(images), targets)["logs"]
    assert_all_head_grads(model, images, targets)
    pred = model.predict(images)
    assert pred["points"].shape == (n, 2, 2) and pred["scores"].shape == (n, 2)
    with pytest.raises(ValueError, match="landmark points"):
        model.loss(out, {"points": points[:, :1]})
