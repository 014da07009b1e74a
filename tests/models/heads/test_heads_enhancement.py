"""Enhancement generator + PatchGAN head: identity at start, single-loss GAN gradients, learns on pairs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from echocare.data.phantom import phantom_image
from echocare.losses.enhancement import lsgan_loss, paired_enhancement_loss, ssim_loss
from echocare.metrics.enhancement import psnr
from echocare.models import create_encoder
from echocare.models.heads import FinetuneModel
from echocare.models.heads.enhancement import EnhancementHead, PatchDiscriminator


def degraded_pairs(n: int = 8, size: int = 64, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(low, high): phantom images and their blurred + noisy versions, (n, 1, S, S) in [0, 1]."""
    rng = np.random.default_rng(seed)
    kinds = ["liver", "thyroid", "kidney", "breast"]
    high = np.stack([phantom_image(rng, size, kinds[i % 4])[0] for i in range(n)]).astype(np.float32) / 255
    low = np.clip(np.stack([ndimage.gaussian_filter(h, 1.2) for h in high]) + rng.normal(0, 0.08, high.shape), 0, 1)
    return torch.from_numpy(low.astype(np.float32))[:, None], torch.from_numpy(high)[:, None]


def tiny_model(**kw) -> FinetuneModel:
    torch.manual_seed(0)
    enc = create_encoder("echocare_swin_debug", img_size=64)
    return FinetuneModel(enc, EnhancementHead(enc.feature_info, feature_size=8, **kw))


def test_losses_hand_cases():
    x = torch.rand(2, 1, 16, 16)
    assert float(ssim_loss(x, x).max()) < 1e-5
    assert float(ssim_loss(x, 1 - x).min()) > 0.5
    assert float(lsgan_loss(torch.ones(3), real=True)) == 0.0 and float(lsgan_loss(torch.ones(3), real=False)) == 1.0
    parts = paired_enhancement_loss(x, x)
    assert float(parts["loss"]) < 1e-5
    with pytest.raises(ValueError, match="smaller than the SSIM window"):
        ssim_loss(torch.rand(1, 1, 4, 4), torch.rand(1, 1, 4, 4))


def test_identity_at_init_and_shapes():
    model = tiny_model()
    low, _ = degraded_pairs(2)
    out = model(low)
    assert out["enhanced"].shape == low.shape
    assert torch.equal(out["enhanced"], low)  # residual head starts as the identity
    assert PatchDiscriminator(1, 8, 2)(low).shape[:2] == (2, 1)
    with pytest.raises(ValueError, match="image should be"):
        model.head([torch.zeros(1)], torch.zeros(2, 3, 64, 64))


def test_single_loss_gives_each_player_its_own_gradient():
    model = tiny_model(adv_weight=1.0)
    low, high = degraded_pairs(2)
    with torch.no_grad():  # leave the identity so every decoder weight gets a gradient
        model.head.out.conv.conv.weight.normal_(0, 0.01)
    res = model.loss(model(low), {"high": high, "paired": torch.tensor([True, False])})
    assert {"g_adv", "d_loss", "structure", "l1", "ssim_loss"} <= set(res["logs"])
    res["loss"].backward()
    for name, p in model.head.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    # the generator's adversarial term alone must not touch the discriminator
    model.zero_grad(set_to_none=True)
    fake = model(low)["enhanced"]
    lsgan_loss(model.head.discriminate(fake, frozen=True), real=True).backward()
    assert all(p.grad is None for p in model.head.discriminator.parameters())
    assert model.head.out.conv.conv.weight.grad.abs().sum() > 0


def test_learns_paired_enhancement_beyond_identity():
    model = tiny_model(adv_weight=0.0)
    low, high = degraded_pairs(8)
    before = psnr(low, high)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    for _ in range(30):
        res = model.loss(model(low), {"high": high, "paired": torch.ones(8, dtype=torch.bool)})
        opt.zero_grad()
        res["loss"].backward()
        opt.step()
    after = psnr(model.predict(low)["enhanced"], high)
    assert after > before + 1.0, (before, after)
