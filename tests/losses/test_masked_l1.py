"""Eq. (1): masked L1 against hand-computed values."""

import pytest
import torch

from echocare.losses import masked_l1_loss


def test_single_channel_hand_computed():
    pred = torch.tensor([[[[0.0, 0.5], [1.0, 0.25]]]])  # (1, 1, 2, 2)
    target = torch.tensor([[[[1.0, 0.0], [1.0, 1.0]]]])
    mask = torch.tensor([[[1.0, 1.0], [0.0, 1.0]]])  # (1, 2, 2): 3 masked pixels
    # |0-1| + |0.5-0| + |0.25-1| = 1 + 0.5 + 0.75 = 2.25 over 3 masked elements
    assert masked_l1_loss(pred, target, mask).item() == pytest.approx(0.75)


def test_three_channels_count_every_channel():
    pred = torch.zeros(1, 3, 2, 2)
    target = torch.zeros(1, 3, 2, 2)
    target[0, 0, 0, 0] = 1.0  # channel 0, masked pixel
    target[0, 1, 0, 0] = 2.0  # channel 1, masked pixel
    target[0, 2, 1, 1] = 5.0  # channel 2, visible pixel: ignored
    mask = torch.tensor([[[1.0, 0.0], [0.0, 0.0]]])  # one masked pixel
    # numerator 1 + 2 = 3; denominator 1 masked pixel x 3 channels = 3
    for m in (mask, mask.unsqueeze(1)):  # (B, H, W) and (B, 1, H, W)
        assert masked_l1_loss(pred, target, m).item() == pytest.approx(1.0)
    full = mask.unsqueeze(1).expand(1, 3, 2, 2)
    assert masked_l1_loss(pred, target, full).item() == pytest.approx(1.0)


def test_batch_mask_is_not_broadcast_over_channels_as_batch():
    # (B, H, W) with B == C must still broadcast over channels, not be read as (C, H, W).
    pred = torch.zeros(3, 3, 1, 2)
    target = torch.ones(3, 3, 1, 2)
    target[1] = 3.0
    mask = torch.zeros(3, 1, 2)
    mask[1, 0, 0] = 1.0  # only sample 1, first pixel
    assert masked_l1_loss(pred, target, mask).item() == pytest.approx(3.0)


def test_nothing_masked_is_zero_with_grad():
    pred = torch.rand(2, 1, 4, 4, requires_grad=True)
    loss = masked_l1_loss(pred, torch.rand(2, 1, 4, 4), torch.zeros(2, 4, 4))
    assert loss.item() == 0.0
    loss.backward()
    assert pred.grad is not None and torch.count_nonzero(pred.grad) == 0


def test_gradient_only_on_masked_pixels():
    pred = torch.rand(1, 2, 4, 4, requires_grad=True)
    mask = torch.zeros(1, 4, 4)
    mask[0, :2] = 1.0
    masked_l1_loss(pred, torch.rand(1, 2, 4, 4), mask).backward()
    assert torch.all(pred.grad[:, :, :2] != 0)
    assert torch.all(pred.grad[:, :, 2:] == 0)


def test_shape_errors_name_the_shapes():
    with pytest.raises(ValueError, match="differ"):
        masked_l1_loss(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 4, 5), torch.ones(1, 4, 4))
    with pytest.raises(ValueError, match="broadcast"):
        masked_l1_loss(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 4, 4), torch.ones(1, 3, 3))
