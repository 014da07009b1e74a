"""Synthetic B-mode phantoms: image properties, labels, same writer as the build.

Speed is measured by bench/phantom_shards.py, not here.
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from echocare.data.phantom import PHANTOM_KINDS, phantom_image, resolve_kind_paths, write_phantom_shards
from echocare.ontology import load_ontology


@pytest.mark.parametrize("kind", sorted(PHANTOM_KINDS))
def test_phantom_image_kinds(kind: str) -> None:
    img, paths = phantom_image(np.random.default_rng(0), 128, kind)
    assert img.shape == (128, 128) and img.dtype == np.uint8
    assert (img == 0).mean() > 0.05  # outside the probe footprint is black
    inside = img[img > 0]
    assert inside.size > 1000 and inside.std() > 10  # speckled, not flat
    assert paths == list(PHANTOM_KINDS[kind][:1])


def test_phantom_depth_attenuation_and_determinism() -> None:
    rows = []
    for seed in range(8):
        img, _ = phantom_image(np.random.default_rng(seed), 128, "liver")
        rows.append((img[20:50][img[20:50] > 0].mean(), img[90:120][img[90:120] > 0].mean()))
    assert np.mean([deep < shallow for shallow, deep in rows]) >= 0.75  # deeper is darker
    a, _ = phantom_image(np.random.default_rng(5), 64, "a4c")
    b, _ = phantom_image(np.random.default_rng(5), 64, "a4c")
    assert np.array_equal(a, b)
    with pytest.raises(ValueError, match="'spleen'"):
        phantom_image(np.random.default_rng(0), 64, "spleen")


def test_phantom_paths_are_in_default_ontology() -> None:
    onto = load_ontology()
    resolved = resolve_kind_paths(onto)
    assert resolved["a4c"] == ["thorax/heart/a4c"] and resolved["thyroid"] == ["head_neck/thyroid"]
    assert resolved["unlabeled"] == []
    assert sum(bool(v) for v in resolved.values()) >= 5


def test_write_200_phantoms(tmp_path: Path) -> None:
    index = write_phantom_shards(tmp_path / "ph", 200, seed=3, image_size=128, shard_max_count=64)
    assert index["total"] == 200 and [s["count"] for s in index["shards"]] == [64, 64, 64, 8]
    assert index["datasets"] == {"phantom": 200}
    assert index["unlabeled"] == 200 // len(PHANTOM_KINDS) + (200 % len(PHANTOM_KINDS) > 6)
    assert index["ontology_hash"] == load_ontology().hash
    onto = load_ontology()
    with tarfile.open(tmp_path / "ph" / "shard-000000.tar") as tar:
        members = tar.getmembers()
        meta = json.loads(tar.extractfile(members[1]).read())
        img = Image.open(io.BytesIO(tar.extractfile(members[0]).read()))
    assert img.mode == "L" and img.size == (128, 128)
    assert meta["dataset"] == "phantom" and meta["source"] == "phantom" and meta["frame"] is None
    assert meta["paths"] == ["thorax/heart/a4c"] and "head_neck/thyroid" in meta["label_space"]
    assert all(p in onto for p in meta["label_space"])
    assert (tmp_path / "ph" / "build_report.jsonl").read_text() == ""


def test_phantom_shards_reproducible(tmp_path: Path) -> None:
    write_phantom_shards(tmp_path / "a", 20, seed=1, image_size=64)
    write_phantom_shards(tmp_path / "b", 20, seed=1, image_size=64)
    write_phantom_shards(tmp_path / "c", 20, seed=2, image_size=64)
    a, b, c = ((tmp_path / d / "shard-000000.tar").read_bytes() for d in "abc")
    assert a == b and a != c
