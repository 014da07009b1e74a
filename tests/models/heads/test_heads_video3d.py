"""3D-CNN clip models (I3D-R50 by inflation, torchvision video ResNets) and the per-clip ROI crop."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision

from echocare.data.labeled.roi import clip_scan_area_box, crop_clip_to_scan_area
from echocare.models.heads.video import video_scores
from echocare.models.heads.video3d import Video3DClassifier, i3d_r50_kernels, inflate_resnet


@pytest.mark.parametrize("arch", ["r3d_18", "r2plus1d_18", "i3d_r50"])
def test_shapes_and_gradient_to_every_parameter(arch):
    torch.manual_seed(0)
    model = Video3DClassifier(arch, num_classes=3, in_chans=1)
    clips = torch.rand(2, 8, 1, 32, 32)
    out = model(clips)
    assert out["logits"].shape == (2, 3)
    res = model.loss(out, {"label": torch.tensor([0, 2])})
    res["loss"].backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    pred = model.predict(clips)
    assert pred["probs"].shape == (2, 3) and torch.allclose(pred["probs"].sum(-1), torch.ones(2))
    with pytest.raises(ValueError, match="clips"):
        model(clips[0])


def test_i3d_layout_follows_slowfast_i3d_r50():
    net = Video3DClassifier("i3d_r50", num_classes=1).net
    assert net.conv1.weight.shape == (64, 1, 5, 7, 7)
    kernels = {n: m.kernel_size[0] for n, m in net.named_modules() if isinstance(m, torch.nn.Conv3d)}
    assert [kernels[f"layer1.0.{i}.conv1"] for i in range(3)] == [3, 3, 3]
    assert [kernels[f"layer2.{i}.conv1"] for i in range(4)] == [3, 1, 3, 1]
    assert [kernels[f"layer3.{i}.conv1"] for i in range(6)] == [3, 1, 3, 1, 3, 1]
    assert [kernels[f"layer4.{i}.conv1"] for i in range(3)] == [1, 3, 1]
    assert all(k == 1 for n, k in kernels.items() if not n.endswith("conv1") or "downsample" in n)
    assert i3d_r50_kernels("layer4.1.conv2") == 1


def test_inflation_keeps_2d_activations_on_a_static_clip():
    torch.manual_seed(0)
    r2d = torchvision.models.resnet18(weights=None, num_classes=4).eval()
    r3d = inflate_resnet(r2d, kernel_of=lambda name: 1, temporal_pool=False).eval()
    frame = torch.rand(2, 3, 32, 32)
    static = frame[:, :, None].expand(-1, -1, 4, -1, -1)  # (B, C, T, H, W)
    with torch.no_grad():
        assert torch.allclose(r3d(static), r2d(frame), atol=1e-5)
    # temporal kernels of 3 (weights / 3) give the 2-D result on the inner frames of a static clip
    r3d_t = inflate_resnet(r2d, kernel_of=lambda name: 3 if name == "conv1" else 1, temporal_pool=False).eval()
    with torch.no_grad():
        x2d = r2d.conv1(frame)
        x3d = r3d_t.conv1(frame[:, :, None].expand(-1, -1, 5, -1, -1))
    assert torch.allclose(x3d[:, :, 2], x2d, atol=1e-5)
    assert isinstance(r2d.conv1, torch.nn.Conv2d)  # the 2-D model is untouched


def test_video_scores_average_clip_probabilities_of_a_3d_model():
    torch.manual_seed(0)
    model = Video3DClassifier("r3d_18", num_classes=2)
    video = torch.rand(19, 1, 32, 32)
    res = video_scores(model, video, clip_len=8, batch_size=1)
    model.eval()
    with torch.no_grad():
        manual = torch.stack([model(video[s : s + 8][None])["logits"][0].softmax(-1) for s in (0, 8)])
    assert res["clip_starts"].tolist() == [0, 8] and res["frames_left_out"] == 3
    assert torch.allclose(res["clip_scores"], manual, atol=1e-5)
    assert torch.allclose(res["score"], manual.mean(0), atol=1e-5)


def test_roi_crop_is_fixed_per_clip_and_leaves_out_text():
    rng = np.random.default_rng(0)
    frames = np.zeros((6, 80, 100), np.float32)
    for t in range(6):  # a moving bright scan region inside a fixed rectangle, plus a small text label
        frames[t, 10:70, 20 + t : 80 - t] = rng.uniform(0.3, 1.0, (60, 60 - 2 * t))
        frames[t, 2:6, 90:98] = 1.0
    box = clip_scan_area_box(frames)
    assert box == (10, 20, 70, 80)  # the union of the frames' regions, without the label
    cropped, box2 = crop_clip_to_scan_area(list(frames))
    assert box2 == box and cropped.shape == (6, 60, 60)
    blank, full = crop_clip_to_scan_area(np.zeros((2, 30, 40), np.uint8))
    assert full == (0, 0, 30, 40) and blank.shape == (2, 30, 40)
    with pytest.raises(ValueError, match="T, H, W"):
        clip_scan_area_box(np.zeros((30, 40)))
