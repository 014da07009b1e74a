"""SwinUNETR-style segmentation head and the Dice+CE loss."""

from __future__ import annotations

import pytest
import torch

from echocare.losses.segmentation import dice_ce_loss
from echocare.models.heads import FinetuneModel, SegmentationHead, create_head


def disk_batch(n: int = 4, radius: float = 10.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Noisy images with one bright disk each, and the disk masks (B, H, W)."""
    g = torch.Generator().manual_seed(1)
    yy, xx = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    images = torch.rand(n, 1, 64, 64, generator=g) * 0.2
    masks = torch.zeros(n, 64, 64, dtype=torch.long)
    for i in range(n):
        cx, cy = (torch.rand(2, generator=g) * 30 + 17).tolist()
        inside = (xx - cx) ** 2 + (yy - cy) ** 2 < radius**2
        images[i, 0][inside] += 0.7
        masks[i][inside] = 1
    return images, masks


def test_dice_ce_loss_hand_cases():
    target = torch.zeros(1, 4, 4, dtype=torch.long)
    target[0, :2] = 1
    perfect = torch.nn.functional.one_hot(target, 2).permute(0, 3, 1, 2).float() * 40 - 20
    res = dice_ce_loss(perfect, target)
    assert float(res["dice_loss"]) < 1e-6 and float(res["ce_loss"]) < 1e-6
    wrong = -perfect
    assert float(dice_ce_loss(wrong, target)["dice_loss"]) > 0.99
    # ignored pixels change nothing: mark the wrong half ignored → perfect again
    half = perfect.clone()
    half[0, :, 2:] = -half[0, :, 2:]
    t_ign = target.clone()
    t_ign[0, 2:] = -100
    assert float(dice_ce_loss(half, t_ign)["loss"]) < 1e-5
    with pytest.raises(ValueError, match="labels must be in"):
        dice_ce_loss(perfect, target + 2)
    with pytest.raises(ValueError, match="target should be"):
        dice_ce_loss(perfect, target[:, :2])


def test_segmentation_shapes_patch4_and_patch2_strides(tiny_backbone):
    backbone = tiny_backbone()
    head = create_head("segmentation", backbone.feature_info, num_classes=3, feature_size=8)
    assert [s for s in head.scales] == [1, 2, 4, 8, 16, 32]
    assert [k for k, _ in head.sources] == ["image", "previous", "feature", "feature", "feature", "feature"]
    out = FinetuneModel(backbone, head)(torch.rand(2, 1, 64, 64))
    assert out["logits"].shape == (2, 3, 64, 64)
    # a patch-2 backbone: strides 2..16, no gap between the stem and the first stage
    info = [(8, 2), (16, 4), (32, 8), (64, 16)]
    head2 = SegmentationHead(info, num_classes=2, feature_size=8)
    assert [k for k, _ in head2.sources] == ["image"] + ["feature"] * 4
    feats = [torch.rand(1, c, 32 // r, 32 // r) for c, r in info]
    logits = head2(feats, torch.rand(1, 1, 32, 32))["logits"]
    assert logits.shape == (1, 2, 32, 32)
    with pytest.raises(ValueError, match="at stride 2 needs"):
        head2(feats, torch.rand(1, 1, 64, 64))


def test_segmentation_trains_on_disks_and_every_head_param_has_grad(tiny_backbone, train, assert_all_head_grads):
    backbone = tiny_backbone()
    model = FinetuneModel(backbone, SegmentationHead(backbone.feature_info, num_classes=2, feature_size=8))
    images, masks = disk_batch()
    losses = train(model, images, {"mask": masks}, lr=3e-3)
    assert losses[-1] < 0.7 * losses[0], losses
    assert_all_head_grads(model, images, {"mask": masks})
    pred = model.predict(images)
    assert pred["mask"].shape == (4, 64, 64) and pred["probs"].shape == (4, 2, 64, 64)
    dice = 2 * ((pred["mask"] == 1) & (masks == 1)).sum() / ((pred["mask"] == 1).sum() + (masks == 1).sum())
    assert dice > 0.5


def test_segmentation_rejects_bad_config():
    with pytest.raises(ValueError, match="background"):
        SegmentationHead([(8, 4), (16, 8)], num_classes=1)
    with pytest.raises(ValueError, match="power-of-two"):
        SegmentationHead([(8, 3), (16, 6)], num_classes=2)
    head = SegmentationHead([(8, 4), (16, 8)], num_classes=2, feature_size=8)
    with pytest.raises(ValueError, match="image should be"):
        head([torch.rand(1, 8, 4, 4), torch.rand(1, 16, 2, 2)], torch.rand(1, 3, 16, 16))
    with pytest.raises(KeyError, match="mask"):
        head.loss({"logits": torch.rand(1, 2, 16, 16)}, {"label": 1})


def test_segmentation_without_image_stem_decodes_backbone_features_only(tiny_backbone, train,
                                                                        assert_all_head_grads):
    backbone = tiny_backbone()
    head = create_head("segmentation", backbone.feature_info, num_classes=2, feature_size=8, image_stem=False)
    assert [k for k, _ in head.sources] == ["none", "none", "feature", "feature", "feature", "feature"]
    assert not any(k.startswith(("encoders.0.", "encoders.1.")) for k in head.state_dict())  # no image path
    feats = [torch.rand(1, c, 64 // r, 64 // r) for c, r in zip(head.spec.channels, head.spec.reductions)]
    a = head(feats, torch.zeros(1, 1, 64, 64))["logits"]
    b = head(feats, torch.rand(1, 1, 64, 64))["logits"]
    assert a.shape == (1, 2, 64, 64) and torch.equal(a, b)  # the image only fixes the output size
    model = FinetuneModel(backbone, head)
    images, masks = disk_batch()
    losses = train(model, images, {"mask": masks}, lr=3e-3)
    assert losses[-1] < 0.8 * losses[0], losses
    assert_all_head_grads(model, images, {"mask": masks})
