"""PretrainAugment and the sampling helpers: determinism, probabilities, geometry, weights."""

from __future__ import annotations

import random

import pytest
import torch

from echocare.data.sampling import (derive_seed, draw_repeats, expected_mixture, parse_dataset_weights,
                                    repeat_factors, shuffle_buffer, split_shards)
from echocare.data.labeled.media import resize_image
from echocare.data.transforms import PretrainAugment


def ramp(h: int, w: int) -> torch.Tensor:
    """uint8 (h, w) with distinct values along both axes."""
    y = torch.arange(h)[:, None] * 7
    x = torch.arange(w)[None, :] * 3
    return ((y + x) % 256).to(torch.uint8)


def as_u8(x: torch.Tensor) -> torch.Tensor:
    return (x * 255).round().to(torch.uint8)


def test_output_shape_range_and_determinism():
    aug = PretrainAugment(48)
    imgs = [ramp(60, 80), ramp(48, 48), ramp(100, 70)]
    a = aug(imgs, torch.Generator().manual_seed(3))
    b = aug(imgs, torch.Generator().manual_seed(3))
    c = aug(imgs, torch.Generator().manual_seed(4))
    assert a.shape == (3, 1, 48, 48) and a.dtype == torch.float32
    assert a.min() >= 0 and a.max() <= 1
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_no_augment_is_centre_crop_and_resize():
    aug = PretrainAugment(32, augment=False)
    img = ramp(32, 48)
    out = aug([img], torch.Generator().manual_seed(0))
    assert torch.allclose(out[0, 0], img[:, 8:40].float() / 255, atol=1e-6, rtol=0)


def test_flip_probabilities():
    aug = PretrainAugment(16, crop_p=0.0, jitter_p=0.0, hflip_p=0.5, vflip_p=0.2)
    img = ramp(16, 16)
    out = as_u8(aug([img] * 2000, torch.Generator().manual_seed(0)))
    ref = img
    h = (out[:, 0] == ref.flip(-1)).flatten(1).all(1) | (out[:, 0] == ref.flip(-1).flip(-2)).flatten(1).all(1)
    v = (out[:, 0] == ref.flip(-2)).flatten(1).all(1) | (out[:, 0] == ref.flip(-1).flip(-2)).flatten(1).all(1)
    assert abs(h.float().mean() - 0.5) < 0.05 and abs(v.float().mean() - 0.2) < 0.04


def test_crop_boxes_respect_scale_and_ratio():
    aug = PretrainAugment(32, crop_p=1.0, crop_scale=(0.5, 0.8), crop_ratio=(0.75, 1.333))
    g = torch.Generator().manual_seed(0)
    for u in torch.rand(500, 10, generator=g):
        top, left, h, w = aug.crop_box(200, 300, u)
        assert 0 <= top and top + h <= 200 and 0 <= left and left + w <= 300
        assert 0.45 <= h * w / 60000 <= 0.85 and 0.7 <= w / h <= 1.4


def test_stretch_fit_frames_like_the_finetune_reader():
    # pretraining with fit="stretch" sees the whole frame squeezed to the square, as fine-tuning reads it
    img = ramp(40, 60)
    out = PretrainAugment(32, augment=False, fit="stretch")([img], torch.Generator().manual_seed(0))
    ref = resize_image(img.numpy() / 255.0, 32)  # (1, S, S) float in [0, 1]
    assert out.shape == (1, 1, 32, 32)
    assert (out[0] - ref).abs().max() <= 2 / 255
    centre = PretrainAugment(32, augment=False)([img], torch.Generator().manual_seed(0))
    assert (centre[0] - ref).abs().max() > 0.1  # the default centre crop does not


def test_stretch_crop_boxes_are_relative_to_the_frame():
    aug = PretrainAugment(32, crop_p=1.0, crop_scale=(0.5, 0.8), crop_ratio=(0.75, 1.333), fit="stretch")
    g = torch.Generator().manual_seed(0)
    for u in torch.rand(500, 10, generator=g):
        top, left, h, w = aug.crop_box(100, 300, u)
        assert 0 <= top and top + h <= 100 and 0 <= left and left + w <= 300
        fw, fh = w / 300, h / 100  # sides as fractions of the frame's sides
        assert 0.45 <= fw * fh <= 0.85 and 0.7 <= fw / fh <= 1.4
    assert aug.crop_box(100, 300, torch.ones(10)) == (0, 0, 100, 300)  # no crop drawn: the whole frame


def test_jitter_changes_some_images_only():
    aug = PretrainAugment(16, hflip_p=0, vflip_p=0, crop_p=0, jitter_p=0.3, brightness=0.4, contrast=0.4)
    img = ramp(16, 16)
    out = aug([img] * 1000, torch.Generator().manual_seed(0))
    changed = (as_u8(out[:, 0]) != img).flatten(1).any(1).float().mean()
    assert 0.25 < changed < 0.35


def test_bad_arguments():
    with pytest.raises(ValueError, match="hflip_p"):
        PretrainAugment(32, hflip_p=1.5)
    with pytest.raises(ValueError, match="crop_scale"):
        PretrainAugment(32, crop_scale=(0.9, 0.5))
    with pytest.raises(ValueError, match="fit"):
        PretrainAugment(32, fit="pad")
    with pytest.raises(ValueError, match="image 0"):
        PretrainAugment(32)([torch.zeros(3, 8, 8, dtype=torch.uint8)])


def test_weights_and_repeat_factors():
    counts = {"a": 10000, "b": 100}
    assert parse_dataset_weights(None, counts) is None
    t1 = parse_dataset_weights("temperature:1", counts)
    assert t1["b"] == pytest.approx(100 / 10100)
    half = parse_dataset_weights("temperature:0.5", counts)
    assert half["b"] / half["a"] == pytest.approx(0.1)
    factors = repeat_factors(half, counts, total=10100)
    assert expected_mixture(factors, counts)["b"] == pytest.approx(half["b"])
    assert sum(factors[d] * counts[d] for d in counts) == pytest.approx(10100)
    with pytest.raises(ValueError, match="lacks"):
        parse_dataset_weights({"a": 1}, counts)
    with pytest.raises(ValueError, match="temperature"):
        parse_dataset_weights("temp=0.5", counts)
    rng = random.Random(0)
    draws = [draw_repeats(2.25, rng) for _ in range(4000)]
    assert set(draws) == {2, 3} and abs(sum(draws) / 4000 - 2.25) < 0.03


def test_split_and_shuffle_helpers():
    shards = list(range(10))
    parts = [split_shards(shards, r, 2, w, 3) for r in range(2) for w in range(3)]
    assert sorted(x for p in parts for x in p) == shards
    assert split_shards(shards, 1, 2, 0, 1) == [1, 3, 5, 7, 9]
    out = list(shuffle_buffer(iter(range(100)), 10, random.Random(0)))
    assert sorted(out) == list(range(100)) and out != list(range(100))
    assert derive_seed(1, 2, 3) == derive_seed(1, 2, 3) != derive_seed(1, 3, 2)


def test_uint8_output_matches_float_output():
    aug = PretrainAugment(24, jitter_p=0.5, brightness=0.3, contrast=0.3)
    imgs = [ramp(30, 40)] * 16
    f = aug(imgs, torch.Generator().manual_seed(5))
    u = aug(imgs, torch.Generator().manual_seed(5), dtype=torch.uint8)
    assert u.dtype == torch.uint8 and u.shape == f.shape
    assert (u.int() - (f * 255).round().int()).abs().max() <= 1
