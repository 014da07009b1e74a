"""FCOS-style detection head, box helpers and detection losses."""

from __future__ import annotations

import math

import pytest
import torch
from torchvision.ops import box_iou

from echocare.losses.detection import centerness_target, focal_loss, giou_loss
from echocare.models.heads import DetectionHead, FinetuneModel, create_head, ellipse_to_box


def disk_batch(n: int = 4, radius: float = 10.0):
    """Images with one bright disk each; boxes (1, 4) and labels (1,) per image."""
    g = torch.Generator().manual_seed(1)
    yy, xx = torch.meshgrid(torch.arange(64.0) + 0.5, torch.arange(64.0) + 0.5, indexing="ij")
    images = torch.rand(n, 1, 64, 64, generator=g) * 0.2
    boxes = []
    for i in range(n):
        cx, cy = (torch.rand(2, generator=g) * 30 + 17).tolist()
        images[i, 0][(xx - cx) ** 2 + (yy - cy) ** 2 < radius**2] += 0.7
        boxes.append(ellipse_to_box(cx, cy, radius, radius, 0.0).reshape(1, 4))
    return images, boxes, [torch.zeros(1, dtype=torch.long) for _ in range(n)]


def test_ellipse_to_box_hand_cases():
    assert torch.allclose(ellipse_to_box(10, 20, 5, 2, 0), torch.tensor([5.0, 18.0, 15.0, 22.0]))
    assert torch.allclose(ellipse_to_box(10, 20, 5, 2, 90), torch.tensor([8.0, 15.0, 12.0, 25.0]), atol=1e-5)
    assert torch.allclose(ellipse_to_box(10, 20, 5, 2, math.pi / 2, degrees=False),
                          torch.tensor([8.0, 15.0, 12.0, 25.0]), atol=1e-5)
    assert torch.allclose(ellipse_to_box(0, 0, 3, 3, 37), torch.tensor([-3.0, -3.0, 3.0, 3.0]))
    # 45°: half extents sqrt((a² + b²) / 2); sign of the angle does not matter
    h = math.sqrt((16 + 4) / 2)
    assert torch.allclose(ellipse_to_box(0, 0, 4, 2, 45), torch.tensor([-h, -h, h, h]), atol=1e-5)
    assert torch.allclose(ellipse_to_box(0, 0, 4, 2, -45), ellipse_to_box(0, 0, 4, 2, 45))
    # the box is tight: dense samples of the rotated ellipse touch all four sides
    t = torch.linspace(0, 2 * math.pi, 20001, dtype=torch.float64)
    th = math.radians(30)
    x = 7 + 6 * torch.cos(t) * math.cos(th) - 3 * torch.sin(t) * math.sin(th)
    y = -2 + 6 * torch.cos(t) * math.sin(th) + 3 * torch.sin(t) * math.cos(th)
    ref = torch.tensor([x.min(), y.min(), x.max(), y.max()], dtype=torch.float32)
    assert torch.allclose(ellipse_to_box(7, -2, 6, 3, 30), ref, atol=1e-4)
    batch = ellipse_to_box(torch.tensor([1.0, 2.0]), torch.tensor([1.0, 2.0]), 1.0, 2.0, torch.tensor([0.0, 90.0]))
    assert batch.shape == (2, 4)
    with pytest.raises(ValueError, match="semi-axes"):
        ellipse_to_box(0, 0, -1, 2, 0)


def test_loss_primitives():
    box = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    assert float(giou_loss(box, box)) < 1e-6
    assert float(giou_loss(box, box + 20)) > 1.0  # disjoint boxes: GIoU < 0
    assert float(giou_loss(torch.zeros(0, 4), torch.zeros(0, 4))) == 0.0
    assert torch.allclose(centerness_target(torch.tensor([[2.0, 2.0, 2.0, 2.0], [1.0, 2.0, 4.0, 2.0]])),
                          torch.tensor([1.0, 0.5]))
    logits = torch.tensor([[10.0, -10.0]])
    assert float(focal_loss(logits, torch.tensor([[1.0, 0.0]]), 1)) < 1e-4
    assert float(focal_loss(logits, torch.tensor([[0.0, 1.0]]), 1)) > 1.0


def test_assignment_never_drops_a_small_box():
    head = DetectionHead([(8, 4), (16, 8), (32, 16)], num_classes=2, channels=16)
    out = head([torch.rand(1, 8, 16, 16), torch.rand(1, 16, 8, 8), torch.rand(1, 32, 4, 4)], torch.rand(1, 1, 64, 64))
    assert head.stride == 8 and out["cls_logits"].shape == (1, 64, 2) and out["box_ltrb"].shape == (1, 64, 4)
    # a 2x2 box lying between location centres, plus a large overlapping box of class 0
    boxes = torch.tensor([[29.0, 29.0, 31.0, 31.0], [8.0, 8.0, 56.0, 56.0]])
    cls_t, box_t, pos = head.assign(out["points"], (8, 8), boxes, torch.tensor([1, 0]))
    small = (box_t == boxes[0]).all(dim=1) & pos
    assert small.sum() == 1 and cls_t[small][0].tolist() == [0.0, 1.0]
    # the large box keeps the other 3 locations within 1.5 strides of its centre (32, 32)
    assert ((box_t == boxes[1]).all(dim=1) & pos).sum() == 3
    assert int(cls_t.sum()) == int(pos.sum())  # one class per positive location
    with pytest.raises(ValueError, match=r"targets\[0\]"):
        head.loss(out, {"boxes": [torch.tensor([[5.0, 5.0, 1.0, 9.0]])], "labels": [torch.tensor([0])]})


def test_detection_trains_and_decodes(tiny_backbone, train, assert_all_head_grads):
    backbone = tiny_backbone()
    model = FinetuneModel(backbone, create_head("detection", backbone.feature_info, num_classes=1, channels=32))
    images, boxes, labels = disk_batch()
    targets = {"boxes": boxes, "labels": labels}
    losses = train(model, images, targets, steps=25)
    assert losses[-1] < 0.7 * losses[0], losses
    assert_all_head_grads(model, images, targets)
    # an image without objects is fine (all locations negative)
    empty = model.loss(model(images[:1]), {"boxes": [torch.zeros(0, 4)], "labels": [torch.zeros(0)]})
    assert torch.isfinite(empty["loss"])
    preds = model.eval().predict(images)
    assert len(preds) == 4
    top_iou = [float(box_iou(p["boxes"][:1], gt).max()) if len(p["boxes"]) else 0.0 for p, gt in zip(preds, boxes)]
    assert sum(top_iou) / len(top_iou) > 0.5, top_iou  # the top detections find the disks
    for p in preds:
        assert set(p) == {"boxes", "scores", "labels"}
        assert p["boxes"].shape[-1] == 4 and p["scores"].shape == p["labels"].shape
        assert (p["boxes"] >= 0).all() and (p["boxes"] <= 64).all()
        assert (p["scores"][:-1] >= p["scores"][1:]).all()


def test_decode_applies_nms():
    head = DetectionHead([(8, 8)], num_classes=1, channels=8, score_thresh=0.3)
    p = 4
    outputs = {
        "cls_logits": torch.full((1, p, 1), -10.0), "ctr_logits": torch.full((1, p), 10.0),
        "box_ltrb": torch.full((1, p, 4), 6.0), "grid_size": torch.tensor([2, 2]),
        "points": torch.tensor([[4.0, 4.0], [5.0, 4.0], [12.0, 12.0], [4.0, 12.0]]),
        "image_size": torch.tensor([16, 16]),
    }
    outputs["cls_logits"][0, :3, 0] = torch.tensor([3.0, 2.0, 1.0])  # two near-duplicates + one far box
    res = head.predict(outputs)[0]
    assert res["boxes"].shape == (2, 4)
    assert torch.allclose(res["boxes"][0], torch.tensor([0.0, 0.0, 10.0, 10.0]))
    assert res["labels"].tolist() == [0, 0]
