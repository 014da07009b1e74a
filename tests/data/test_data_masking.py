"""SimMIM MaskGenerator: geometry, exact ratio, determinism, validation."""

from __future__ import annotations

import math

import pytest
import torch

from echocare.data.masking import MaskGenerator


@pytest.mark.parametrize("img_size,patch,block,ratio", [(256, 4, 32, 0.5), (64, 2, 16, 0.6), (96, 4, 32, 0.3)])
def test_mask_shape_ratio_and_blocks(img_size, patch, block, ratio):
    gen = MaskGenerator(img_size, patch, block, ratio)
    mask = gen(5, torch.Generator().manual_seed(0))
    side = img_size // patch
    assert mask.shape == (5, side, side) and mask.dtype == torch.float32
    assert set(mask.unique().tolist()) <= {0.0, 1.0}
    blocks = (img_size // block) ** 2
    expected = math.ceil(blocks * ratio) / blocks
    assert torch.allclose(mask.flatten(1).mean(1), torch.full((5,), expected))
    scale, g = block // patch, img_size // block
    tiles = mask.view(5, g, scale, g, scale)  # every mask block covers scale×scale tokens uniformly
    assert torch.equal(tiles.amax(dim=(2, 4)), tiles.amin(dim=(2, 4)))


def test_masks_differ_per_image_and_follow_the_seed():
    gen = MaskGenerator(64, 4, 16, 0.5)
    a = gen(8, torch.Generator().manual_seed(1))
    b = gen(8, torch.Generator().manual_seed(1))
    c = gen(8, torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert len({tuple(m.flatten().tolist()) for m in a}) > 1


def test_block_positions_are_uniform():
    gen = MaskGenerator(128, 4, 32, 0.5)  # 16 blocks, 8 masked
    freq = gen(2000, torch.Generator().manual_seed(0))[:, ::8, ::8].mean(0)  # (4, 4) block frequencies
    assert torch.all((freq - 0.5).abs() < 0.06)


@pytest.mark.parametrize("kwargs,match", [
    (dict(img_size=100, patch_size=4, mask_patch_size=32), "img_size 100"),
    (dict(img_size=96, patch_size=5, mask_patch_size=32), "patch_size 5"),
    (dict(img_size=96, patch_size=4, mask_patch_size=32, mask_ratio=1.5), "mask_ratio"),
    (dict(img_size=96, patch_size=0, mask_patch_size=32), "patch_size"),
])
def test_bad_geometry_is_rejected(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MaskGenerator(**kwargs)
