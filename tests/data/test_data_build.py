"""Shard building end to end: round trip, bad inputs, determinism, resume."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
import webdataset as wds
import yaml
from PIL import Image

from echocare.data.build import build_shards
from echocare.data.writer import Sample, ShardWriter, sha256_file


@pytest.fixture(scope="module")
def built(corpus: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("shards") / "out"
    build_shards(corpus["manifest"], out, workers=1)
    return out


def _read_tar(path: Path) -> dict[str, dict[str, bytes]]:
    samples: dict[str, dict[str, bytes]] = {}
    with tarfile.open(path) as tar:
        for m in tar.getmembers():
            key, ext = m.name.rsplit(".", 1)
            samples.setdefault(key, {})[ext] = tar.extractfile(m).read()
            assert m.mtime == 0 and m.uid == 0 and m.gid == 0
    return samples


def _report(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "build_report.jsonl").read_text().splitlines()]


def test_round_trip_tarfile_and_index(built: Path) -> None:
    index = json.loads((built / "index.json").read_text())
    shards = sorted(built.glob("shard-*.tar"))
    assert [s["name"] for s in index["shards"]] == [p.name for p in shards]
    total = 0
    for rec, path in zip(index["shards"], shards):
        samples = _read_tar(path)
        assert len(samples) == rec["count"] <= 4  # shard_max_count: 4
        assert sha256_file(path) == rec["sha256"] and path.stat().st_size == rec["bytes"]
        for key, parts in samples.items():
            assert set(parts) == {"png", "json"} and "." not in key
            img = Image.open(io.BytesIO(parts["png"]))
            assert img.mode == "L" and min(img.size) == 64
            meta = json.loads(parts["json"])
            assert set(meta) >= {"dataset", "source", "frame", "paths", "label_space", "metadata"}
            assert key.startswith(meta["dataset"] + "/")
        total += len(samples)
    assert total == index["total"] == sum(index["datasets"].values())
    assert index["version"] == 1 and index["image_size"] == 64 and len(index["ontology_hash"]) == 64


def test_webdataset_reads_grayscale(built: Path) -> None:
    urls = [str(p) for p in sorted(built.glob("shard-*.tar"))]
    ds = wds.WebDataset(urls, shardshuffle=False, nodesplitter=None, empty_check=False).decode("l8")
    rows = list(ds)
    assert len(rows) == json.loads((built / "index.json").read_text())["total"]
    for row in rows:
        assert row["png"].ndim == 2 and row["png"].dtype == np.uint8
        assert isinstance(row["json"], dict) and row["json"]["dataset"]


def _all_meta(out: Path) -> list[dict]:
    metas = []
    for path in sorted(out.glob("shard-*.tar")):
        metas += [json.loads(p["json"]) for p in _read_tar(path).values()]
    return metas


def test_done_when_labels_frames_and_report(built: Path) -> None:
    metas = _all_meta(built)
    by_ds: dict[str, list[dict]] = {}
    for m in metas:
        by_ds.setdefault(m["dataset"], []).append(m)
    assert sorted(m["frame"] for m in by_ds["clips"]) == [0, 10, 20]  # 30-frame MP4 at stride 10
    dicom = [m for m in by_ds["echo_dicom"] if m["source"] == "echo.dcm"]
    assert sorted(m["frame"] for m in dicom) == [0, 10, 20]  # ybr_color: 30 frames
    assert all(m["paths"] == ["thorax/heart"] for m in by_ds["clips"] + dicom)
    assert all(m["metadata"]["modality"] == "Doppler" and m["metadata"]["country"] == "XX" for m in dicom)
    pocus = {m["source"]: m for m in by_ds["pocus_frames"]}
    assert set(pocus) == {"p01/lung_a.png", "p01/lung_b.png", "p02/lung_c.png", "p02/lung_d.png",
                          "p03/heart_a4c.png"}
    assert pocus["p03/heart_a4c.png"]["paths"] == ["thorax/heart/a4c"]  # regex rule beats dataset label
    assert pocus["p01/lung_a.png"]["paths"] == ["thorax/lung"]
    assert pocus["p02/lung_c.png"]["metadata"]["group"] == "p02"  # group_regex
    assert pocus["p01/lung_a.png"]["metadata"]["modality"] == "B-mode"  # normalised
    assert pocus["p01/lung_a.png"]["frame"] is None
    reasons = {(r["source"], r["reason"]) for r in _report(built)}
    assert reasons == {
        ("bad/truncated.png", "truncated"), ("bad/empty.png", "empty-file"), ("bad/text.png", "not-an-image"),
        ("bad/black.png", "too-few-pixels"), ("p03/copy_of_a.png", "duplicate"),
        ("p03/near_a.png", "near-duplicate"), ("broken.dcm", "dicom-decode-error"),
    }
    dup = next(r for r in _report(built) if r["reason"] == "duplicate")
    assert dup["detail"] == "duplicate-of pocus_frames/p01/lung_a"
    index = json.loads((built / "index.json").read_text())
    assert index["rejected"]["truncated"] == 1 and sum(index["rejected"].values()) == 7
    assert index["labels"] == {"thorax/heart": 6, "thorax/heart/a4c": 1, "thorax/lung": 4}


def test_decoded_pixels_survive(corpus: dict[str, Path], built: Path) -> None:
    """The stored PNG is the source resized (bicubic) - not a blank or a different image."""
    src = np.asarray(Image.open(corpus["root"] / "pocus" / "p01" / "lung_a.png"))
    meta_png = {json.loads(p["json"])["source"]: p["png"] for path in sorted(built.glob("shard-*.tar"))
                for p in _read_tar(path).values()}
    stored = np.asarray(Image.open(io.BytesIO(meta_png["p01/lung_a.png"]))).astype(float)
    expected = np.asarray(Image.fromarray(src).resize((64, 64), Image.Resampling.BICUBIC)).astype(float)
    assert np.abs(stored - expected).mean() < 1.0


def test_exact_duplicates_across_datasets(corpus: dict[str, Path], tmp_path: Path) -> None:
    doc = yaml.safe_load(corpus["manifest"].read_text())
    doc["datasets"] = [doc["datasets"][0] | {"include": ["p01/*.png"], "near_duplicates": None},
                       {"name": "again", "root": "pocus", "include": ["p01/lung_a.png"]}]
    m = corpus["root"] / "manifest_cross.yaml"
    m.write_text(yaml.safe_dump(doc))
    index = build_shards(m, tmp_path / "out")
    assert index["datasets"] == {"again": 0, "pocus_frames": 2}
    rows = _report(tmp_path / "out")
    assert rows == [{"dataset": "again", "source": "p01/lung_a.png", "frame": None, "reason": "duplicate",
                     "detail": "duplicate-of pocus_frames/p01/lung_a"}]


def test_deterministic_across_workers(corpus: dict[str, Path], built: Path, tmp_path: Path) -> None:
    build_shards(corpus["manifest"], tmp_path / "w2", workers=2)
    a = sorted(built.glob("shard-*.tar"))
    b = sorted((tmp_path / "w2").glob("shard-*.tar"))
    assert [p.name for p in a] == [p.name for p in b]
    assert all(x.read_bytes() == y.read_bytes() for x, y in zip(a, b))
    assert (built / "index.json").read_bytes() == (tmp_path / "w2" / "index.json").read_bytes()
    assert (built / "build_report.jsonl").read_bytes() == (tmp_path / "w2" / "build_report.jsonl").read_bytes()


def test_resume_keeps_finished_shards(corpus: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "out"
    first = build_shards(corpus["manifest"], out)
    shards = sorted(out.glob("shard-*.tar"))
    assert len(shards) >= 3
    before = {p.name: (p.stat().st_mtime_ns, sha256_file(p)) for p in shards}
    shards[-1].unlink()
    second = build_shards(corpus["manifest"], out)
    after = {p.name: (p.stat().st_mtime_ns, sha256_file(p)) for p in sorted(out.glob("shard-*.tar"))}
    assert set(after) == set(before)
    for name in list(before)[:-1]:
        assert after[name] == before[name]  # untouched: same mtime and sha
    assert after[shards[-1].name][1] == before[shards[-1].name][1]  # rebuilt identically
    assert first == second
    assert len(_report(out)) == 7


def test_resume_after_input_change_rebuilds(corpus: dict[str, Path], tmp_path: Path) -> None:
    doc = yaml.safe_load(corpus["manifest"].read_text())
    m = corpus["root"] / "manifest_change.yaml"
    m.write_text(yaml.safe_dump(doc))
    out = tmp_path / "out"
    build_shards(m, out)
    doc["shard_max_count"] = 100  # different build: every old shard is invalid
    m.write_text(yaml.safe_dump(doc))
    index = build_shards(m, out)
    assert [p.name for p in sorted(out.glob("shard-*.tar"))] == ["shard-000000.tar"]  # stale ones removed
    assert index["shards"][0]["count"] == index["total"] == 11


def test_writer_size_limit_and_bad_key(tmp_path: Path) -> None:
    payload = bytes(3000)
    w = ShardWriter(tmp_path, max_bytes=10 * 1024 * 2, max_count=100)
    for i in range(10):
        w.write(Sample(f"k/{i}", payload, "png", {"i": i}))
    records = w.close()
    assert len(records) > 1 and sum(r.count for r in records) == 10
    assert all(r.bytes <= 20 * 1024 for r in records)
    with pytest.raises(ValueError, match="a.b"):
        ShardWriter(tmp_path / "x").write(Sample("a.b", payload, "png", {}))


def test_image_sets_noise_frames_crop_and_jpeg(tmp_path: Path, shard_helpers) -> None:
    rng = np.random.default_rng(0)
    root = tmp_path / "sets"
    for case, kind in (("case01", "liver"), ("case02", "thyroid")):
        base = shard_helpers.phantom_png(root / case / "tmp.png", 7, kind, size=80)
        (root / case / "tmp.png").unlink()
        for i in range(8):
            frame = np.zeros((100, 120), np.uint8)
            frame[10:90, 20:100] = np.clip(base.astype(int) + rng.integers(-6, 7, base.shape), 20, 255)
            frame[2:6, 2:40] = 255  # burned-in text, outside the scan area
            if case == "case01" and i == 5:
                frame[:] = 230  # a splash screen inside the set
                frame[40:60, 30:90] = 10
            Image.fromarray(frame).save(root / case / f"img_{i:02d}.png")
    m = tmp_path / "m.yaml"
    m.write_text(yaml.safe_dump({"image_size": 40, "format": "jpeg", "datasets": [
        {"name": "sets", "root": "sets", "kind": "image_sets", "crop": "scan_area", "noise_frames": True,
         "metadata": {"modality": "B-mode"}}]}))
    index = build_shards(m, tmp_path / "out")
    assert index["total"] == 15 and index["format"] == "jpeg"
    rows = _report(tmp_path / "out")
    assert [(r["source"], r["frame"], r["reason"]) for r in rows] == [("case01/img_05.png", 5, "noise-frame")]
    samples = _read_tar(tmp_path / "out" / "shard-000000.tar")
    for key, parts in samples.items():
        meta = json.loads(parts["json"])
        assert set(parts) == {"jpg", "json"}
        assert meta["metadata"]["group"] == meta["source"].split("/")[0]  # each folder is a group
        assert meta["frame"] == int(meta["source"][-6:-4])
        img = Image.open(io.BytesIO(parts["jpg"]))
        assert img.mode == "L" and img.size == (40, 40)  # cropped 80x80 scan area, not 100x120


def test_unexpected_error_is_reported_not_fatal(corpus: dict[str, Path], tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    import echocare.data.build as build_mod

    real = build_mod.read_image

    def flaky(path: Path) -> np.ndarray:
        if Path(path).name == "lung_d.png":
            raise RuntimeError("decoder bug")
        return real(path)

    monkeypatch.setattr(build_mod, "read_image", flaky)
    index = build_shards(corpus["manifest"], tmp_path / "out")
    assert index["total"] == 10 and index["rejected"]["error"] == 1
    row = next(r for r in _report(tmp_path / "out") if r["reason"] == "error")
    assert row["source"] == "p02/lung_d.png" and "decoder bug" in row["detail"]


def _bomb_png() -> bytes:
    """A PNG header claiming 20000 x 20000 gray pixels (over PIL's decompression-bomb limit)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", 20000, 20000, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def test_bomb_truncated_dicom_and_non_utf8_names_in_the_report(tmp_path: Path, shard_helpers) -> None:
    import os

    from pydicom import examples

    root = tmp_path / "data"
    for i in range(3):
        shard_helpers.phantom_png(root / f"ok_{i}.png", i, size=64)
    (root / "bomb.png").write_bytes(_bomb_png())
    raw = Path(examples.get_path("ct")).read_bytes()
    (root / "cut.dcm").write_bytes(raw[: raw.find(b"\xe0\x7f\x10\x00") + 500])  # ends inside pixel data
    odd = os.fsencode(root) + b"/caf\xe9.png"  # a Latin-1 file name: not UTF-8
    with open(odd, "wb") as fh:
        fh.write(b"not an image")
    m = tmp_path / "m.yaml"
    m.write_text(yaml.safe_dump({"image_size": 32, "datasets": [
        {"name": "imgs", "root": "data", "kind": "images", "include": ["*.png"]},
        {"name": "dcm", "root": "data", "kind": "dicom", "include": ["*.dcm"]}]}))
    index = build_shards(m, tmp_path / "out")
    assert index["total"] == 3
    text = (tmp_path / "out" / "build_report.jsonl").read_bytes().decode("utf-8")  # strict UTF-8
    rows = {r["source"]: r["reason"] for r in map(json.loads, text.splitlines())}
    assert rows == {"bomb.png": "decompression-bomb", "cut.dcm": "truncated-pixel-data",
                    "caf\\xe9.png": "not-an-image"}
    assert index["rejected"] == {"decompression-bomb": 1, "not-an-image": 1, "truncated-pixel-data": 1}
