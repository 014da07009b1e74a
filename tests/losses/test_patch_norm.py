"""Per-block normalised targets (MAE's norm_pix_loss) against hand-computed values."""

import pytest
import torch

from echocare.losses import patch_mean_std


def test_hand_computed_block_statistics():
    # One 2x2 block [0, 1; 2, 3] and one constant block [5, 5; 5, 5], side by side.
    images = torch.tensor([[[[0.0, 1.0, 5.0, 5.0], [2.0, 3.0, 5.0, 5.0]]]])  # (1, 1, 2, 4)
    mean, std = patch_mean_std(images, 2, eps=0.0)
    assert mean.shape == std.shape == images.shape
    torch.testing.assert_close(mean[0, 0, :, :2], torch.full((2, 2), 1.5))
    torch.testing.assert_close(mean[0, 0, :, 2:], torch.full((2, 2), 5.0))
    # unbiased variance of 0..3: ((1.5^2 + 0.5^2) * 2) / 3 = 5/3
    torch.testing.assert_close(std[0, 0, :, :2], torch.full((2, 2), (5.0 / 3.0) ** 0.5))
    assert torch.all(std[0, 0, :, 2:] == 0)


def test_normalised_blocks_have_zero_mean_unit_std_and_constant_blocks_become_zero():
    g = torch.Generator().manual_seed(0)
    images = torch.rand(2, 3, 16, 24, generator=g)
    images[0, :, :8, :8] = 0.0  # a black block, as outside an ultrasound fan
    mean, std = patch_mean_std(images, 8)
    target = (images - mean) / std
    blocks = target.reshape(2, 3, 2, 8, 3, 8)
    assert torch.all(blocks[0, :, 0, :, 0, :] == 0)
    flat = blocks.permute(0, 1, 2, 4, 3, 5).reshape(-1, 64)  # one row per (sample, channel, block)
    live = flat[flat.abs().sum(dim=1) > 0]  # all but the 3 black blocks
    assert len(live) == len(flat) - 3
    torch.testing.assert_close(live.mean(dim=1), torch.zeros(len(live)), atol=1e-5, rtol=0)
    torch.testing.assert_close(live.std(dim=1), torch.ones(len(live)), atol=1e-3, rtol=0)


def test_channels_and_samples_are_normalised_separately():
    images = torch.zeros(2, 2, 4, 4)
    images[1, 1] = 7.0
    mean, _ = patch_mean_std(images, 4)
    assert mean[1, 1].unique().tolist() == [7.0]
    assert mean[0].abs().sum() == 0 and mean[1, 0].abs().sum() == 0


@pytest.mark.parametrize("shape, patch, match", [((1, 1, 8, 8), 1, ">= 2"), ((1, 1, 8, 6), 4, "multiple"),
                                                 ((8, 8), 4, r"\(B, C, H, W\)")])
def test_errors_name_the_problem(shape, patch, match):
    with pytest.raises(ValueError, match=match):
        patch_mean_std(torch.zeros(shape), patch)
