"""Enhancement data: low/high folders, pairs by name, unpaired pools, counted skips."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from echocare.data.labeled.enhancement import EnhancementDataset, collate_enhancement, scan_enhancement


def _png(path, value: int, size: int = 40) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size, size + 8), value, np.uint8)).save(path)


def test_pairs_unpaired_pools_and_skips(tmp_path):
    for name, v in [("a", 10), ("b", 20), ("sub/c", 30), ("lonely", 40)]:
        _png(tmp_path / "low" / f"{name}.png", v)
    for name, v in [("a", 110), ("b", 120), ("sub/c", 130), ("extra1", 140), ("extra2", 150)]:
        _png(tmp_path / "high" / f"{name}.png", v)
    (tmp_path / "low" / "notes.txt").write_text("x")
    (tmp_path / "high" / "broken.png").write_bytes(b"not a png")
    _png(tmp_path / "low" / "a.tif", 5)  # same name as a.png (sorted after it: skipped)
    data = scan_enhancement(tmp_path)
    assert data.pairs == [("low/a.png", "high/a.png"), ("low/b.png", "high/b.png"), ("low/sub/c.png", "high/sub/c.png")]
    assert data.low_only == ["low/lonely.png"]
    assert data.high_only == ["high/extra1.png", "high/extra2.png"]
    assert data.skips.by_reason() == {"unsupported-suffix": 1, "corrupt-image": 1, "duplicate-name": 1}

    ds = EnhancementDataset(data, img_size=32, augment=True, seed=3)
    assert len(ds) == 4
    item = ds[1]
    assert item["paired"] and item["low"].shape == (1, 32, 32)
    assert abs(float(item["low"].mean()) - 20 / 255) < 1e-3 and abs(float(item["high"].mean()) - 120 / 255) < 1e-3
    unpaired = ds[3]
    assert not unpaired["paired"] and abs(float(unpaired["low"].mean()) - 40 / 255) < 1e-3
    draws = set()
    for epoch in range(12):  # the unpaired reference is re-drawn from the whole high set each epoch
        ds.set_epoch(epoch)
        draws.add(round(float(ds[3]["high"].mean()) * 255))
    assert len(draws) > 2 and draws <= {110, 120, 130, 140, 150}
    batch = collate_enhancement([ds[i] for i in range(4)])
    assert batch["low"].shape == (4, 1, 32, 32) and batch["paired"].tolist() == [True, True, True, False]


def test_missing_folders_and_empty_sides(tmp_path):
    with pytest.raises(FileNotFoundError, match="low"):
        scan_enhancement(tmp_path)
    (tmp_path / "low").mkdir()
    (tmp_path / "high").mkdir()
    _png(tmp_path / "low" / "a.png", 1)
    with pytest.raises(ValueError, match="found 1 low and 0 high"):
        scan_enhancement(tmp_path)
    assert torch.is_tensor(collate_enhancement([{"low": torch.zeros(1, 2, 2), "high": torch.zeros(1, 2, 2),
                                                 "paired": False, "index": 0, "path": "x"}])["paired"])
