"""Shared set-up of the head tests: one thread, a tiny Swin backbone, a short training loop."""

from __future__ import annotations

import pytest
import timm
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models run fastest single-threaded on a shared 2-core machine."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def _tiny_backbone() -> torch.nn.Module:
    torch.manual_seed(0)
    return timm.create_model(
        "swin_tiny_patch4_window7_224", pretrained=False, img_size=64, window_size=4, embed_dim=24,
        depths=(1, 1, 1, 1), num_heads=(1, 1, 2, 2), in_chans=1, num_classes=0,
    )


def _train(model, images, targets, steps: int = 20, lr: float = 1e-3) -> list[float]:
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    losses = []
    for _ in range(steps):
        res = model.loss(model(images), targets)
        opt.zero_grad()
        res["loss"].backward()
        opt.step()
        losses.append(float(res["loss"].detach()))
    return losses


def _assert_all_head_grads(model, images, targets) -> None:
    """Every head parameter is connected to the loss.

    Targets should lie on one side of all predictions: with an L1 loss, balanced
    over/under-shoots cancel exactly in the gradient of the last bias terms.
    """
    model.zero_grad()
    model.loss(model(images), targets)["loss"].backward()
    for name, p in model.head.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


@pytest.fixture
def tiny_backbone():
    """A factory: each call builds a fresh, seeded 64 px single-channel Swin (strides 4..32)."""
    return _tiny_backbone


@pytest.fixture
def train():
    """``train(model, images, targets, steps=20, lr=1e-3)``: Adam steps on the trainable
    parameters; returns the losses."""
    return _train


@pytest.fixture
def assert_all_head_grads():
    """``assert_all_head_grads(model, images, targets)``: one backward; every head param has a grad."""
    return _assert_all_head_grads
