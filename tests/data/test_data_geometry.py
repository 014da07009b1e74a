"""Random rotation / zoom / shift of labeled items: exact on known transforms, mask and image stay aligned,
only label-safe tasks use it, and the config validates it."""

import logging

import numpy as np
import pytest
import torch
from PIL import Image

from echocare.config import ConfigError, load_config
from echocare.config.finetune import FinetuneConfig
from echocare.data.labeled import LabeledDataset, scan_dataset
from echocare.data.labeled import readers as R
from echocare.data.labeled import scan as S
from echocare.data.labeled.geometry import affine_theta, apply_affine
from echocare.jobs.finetune import make_dataset
from echocare.tasks.registry import get_task


def _rng(seed=0):
    return np.random.default_rng(seed)


def test_identity_and_quarter_turn_are_exact():
    image = torch.rand(1, 8, 8)
    mask = (torch.rand(8, 8) * 3).long()
    same, same_mask = apply_affine(affine_theta(_rng(), 0.0, (1.0, 1.0), 0.0), image, mask)
    assert torch.allclose(same, image, atol=1e-6) and torch.equal(same_mask, mask)
    quarter = torch.tensor([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0]])  # output (x, y) samples input (-y, x)
    turned, turned_mask = apply_affine(quarter, image, mask)  # out[i, j] = in[j, N - 1 - i]
    assert torch.allclose(turned, torch.rot90(image, 1, dims=(1, 2)), atol=1e-5)
    assert torch.equal(turned_mask, torch.rot90(mask, 1, dims=(0, 1)))


def test_draws_stay_in_range_and_zoom_enlarges():
    for seed in range(50):
        t = affine_theta(_rng(seed), 15.0, (0.8, 1.25), 0.1)
        s = 1.0 / float(torch.linalg.det(t[:, :2])) ** 0.5  # the zoom of this draw
        angle = abs(float(torch.atan2(t[1, 0], t[0, 0])))
        assert 0.8 - 1e-6 <= s <= 1.25 + 1e-6 and angle <= np.radians(15) + 1e-6
        assert float(t[:, 2].abs().max()) <= 0.2 + 1e-6
    disc = torch.zeros(1, 32, 32)
    disc[:, 12:20, 12:20] = 1.0
    zoomed, _ = apply_affine(torch.tensor([[0.5, 0.0, 0.0], [0.0, 0.5, 0.0]]), disc)  # zoom 2
    assert int((zoomed > 0.5).sum()) == pytest.approx(4 * int((disc > 0.5).sum()), rel=0.1)


def test_clips_get_one_draw_for_every_frame():
    clip = torch.rand(3, 1, 16, 16)
    clip[1] = clip[0]
    out, _ = apply_affine(affine_theta(_rng(3), 30.0, (0.9, 1.1), 0.1), clip)
    assert out.shape == clip.shape and torch.allclose(out[0], out[1])


def _segmentation_set(tmp_path, n=4):
    rng = _rng(0)
    for i in range(n):
        mask = np.zeros((48, 48), np.uint8)
        r0, c0 = rng.integers(4, 20, size=2)
        mask[r0:r0 + 20, c0:c0 + 14] = 1
        (tmp_path / "images").mkdir(parents=True, exist_ok=True)
        (tmp_path / "masks").mkdir(parents=True, exist_ok=True)
        Image.fromarray(mask * 200 + 20).save(tmp_path / "images" / f"s{i}.png")  # the image shows its mask
        Image.fromarray(mask).save(tmp_path / "masks" / f"s{i}.png")
    return scan_dataset(S.scan_segmentation, tmp_path).records


def test_segmentation_image_and_mask_move_together(tmp_path):
    records = _segmentation_set(tmp_path)
    plain = LabeledDataset(records, R.read_mask, 48)
    ds = LabeledDataset(records, R.read_mask, 48, augment=True, hflip=0.0, intensity=0.0, rotate=25.0,
                        scale=(0.8, 1.2), translate=0.1, affine_safe=True)
    moved = 0
    for epoch in range(3):
        ds.set_epoch(epoch)
        for i in range(len(records)):
            item, ref = ds[i], plain[i]
            bright = item["image"][0] > 0.45  # where the image shows the (moved) object
            agree = (bright == (item["mask"] == 1)).float().mean().item()
            assert agree > 0.97, agree  # only boundary pixels may differ (bilinear vs nearest)
            assert set(item["mask"].unique().tolist()) <= {0, 1}
            moved += int(not torch.equal(item["mask"], ref["mask"]))
    assert moved >= 10  # it did transform
    ds.set_epoch(1)
    again = LabeledDataset(records, R.read_mask, 48, augment=True, hflip=0.0, intensity=0.0, rotate=25.0,
                           scale=(0.8, 1.2), translate=0.1, affine_safe=True)
    again.set_epoch(1)
    assert torch.equal(ds[2]["mask"], again[2]["mask"])  # reproducible from seed, epoch and index


def test_only_label_safe_tasks_use_it(tmp_path, caplog):
    records = _segmentation_set(tmp_path, n=2)
    assert get_task("segmentation").affine_safe and get_task("classification").affine_safe
    assert get_task("video").affine_safe
    for name in ("regression", "landmarks", "detection", "enhancement"):
        assert not get_task(name).affine_safe, name  # a zoom changes a size in pixels; points and boxes would move
    cfg = load_config(FinetuneConfig, None, ["task=regression", "data.root=x", "data.rotate=20"])
    with caplog.at_level(logging.INFO, logger="echocare.data.labeled.dataset"):
        ds = make_dataset(get_task("regression"), cfg, records, train=True)
    assert not ds.use_affine and "not label-safe" in caplog.text
    seg = make_dataset(get_task("segmentation"),
                       load_config(FinetuneConfig, None, ["task=segmentation", "data.root=x", "data.rotate=20"]),
                       records, train=True)
    assert seg.use_affine and not make_dataset(get_task("segmentation"), cfg, records).use_affine  # eval: never


@pytest.mark.parametrize("sets, pattern", [
    (["data.rotate=-1"], "data.rotate"), (["data.translate=0.7"], "data.translate"),
    (["data.scale=[1.2, 0.8]"], "data.scale"), (["data.scale=[0, 1]"], "data.scale"),
    (["data.scale=[1.0]"], "data.scale"),
])
def test_config_rejects(sets, pattern):
    with pytest.raises(ConfigError, match=pattern):
        load_config(FinetuneConfig, None, ["data.root=x", *sets])
