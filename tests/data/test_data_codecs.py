"""The raw-zstd sample format: exact round trip, plain-tool readability, loader support, resume, bad input."""

from __future__ import annotations

import io
import subprocess
import sys
import tarfile

import numpy as np
import pytest
import torch
import webdataset as wds
import zstandard
from PIL.Image import DecompressionBombError

from echocare.data.codecs import RAW_ZSTD_EXT, decode_raw_zstd, encode_raw_zstd
from echocare.data.loader import PretrainStream, make_pretrain_loader
from echocare.data.phantom import write_phantom_shards
from echocare.data.shardcheck import decode_gray
from echocare.data.writer import encode_image


def test_round_trip_is_exact_and_deterministic():
    rng = np.random.default_rng(0)
    for shape in [(1, 1), (17, 33), (256, 256)]:
        img = rng.integers(0, 256, size=shape, dtype=np.uint8)
        data, ext = encode_image(img, "raw-zstd")
        assert ext == RAW_ZSTD_EXT == "npy.zst"
        assert data == encode_image(img, "raw-zstd")[0]
        assert np.array_equal(decode_raw_zstd(data), img)
        assert torch.equal(decode_gray(data), torch.from_numpy(img))


def test_readable_without_echocare():
    img = np.arange(64 * 48, dtype=np.uint32).reshape(64, 48).astype(np.uint8)
    raw = zstandard.ZstdDecompressor().decompress(encode_raw_zstd(img))
    assert np.array_equal(np.load(io.BytesIO(raw), allow_pickle=False), img)  # a plain .npy inside


@pytest.mark.parametrize("bad", [b"", b"\x28\xb5\x2f\xfd" + b"\0" * 8, b"not zstd at all"])
def test_corrupt_bytes_raise_value_error(bad):
    with pytest.raises((ValueError, OSError)):
        decode_gray(bad)


def test_wrong_payloads_are_refused():
    cz = zstandard.ZstdCompressor()
    buf = io.BytesIO()
    np.save(buf, np.zeros((4, 4), dtype=np.float32), allow_pickle=False)
    with pytest.raises(ValueError, match="uint8"):
        decode_raw_zstd(cz.compress(buf.getvalue()))
    buf = io.BytesIO()
    np.save(buf, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError):
        decode_raw_zstd(cz.compress(buf.getvalue()))  # never unpickled
    no_size = zstandard.ZstdCompressor(write_content_size=False).compress(encode_raw_zstd(np.zeros((2, 2), np.uint8)))
    with pytest.raises(ValueError, match="content size"):
        decode_raw_zstd(no_size)


def test_bomb_is_refused_before_decompressing(monkeypatch):
    import PIL.Image

    data = encode_raw_zstd(np.zeros((512, 512), np.uint8))  # compresses to a few hundred bytes
    monkeypatch.setattr(PIL.Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(DecompressionBombError):
        decode_raw_zstd(data)


def test_loader_reads_every_format_and_lossless_formats_agree(tmp_path):
    batches = {}
    for fmt in ("png", "jpeg", "raw-zstd"):
        write_phantom_shards(tmp_path / fmt, 12, seed=1, image_size=64, shard_max_count=5, image_format=fmt)
        ds = PretrainStream(str(tmp_path / fmt), img_size=32, mask_patch_size=8, shuffle_buffer=8, seed=3)
        loader = make_pretrain_loader(ds, batch_size=4)
        batches[fmt] = list(loader)
        assert sum(len(b["key"]) for b in batches[fmt]) == 12
        assert loader.stats["skipped"] == 0
    for a, b in zip(batches["png"], batches["raw-zstd"]):  # lossless: identical pixels and keys
        assert a["key"] == b["key"]
        assert torch.equal(a["image"], b["image"])
    with tarfile.open(next((tmp_path / "raw-zstd").glob("shard-*.tar"))) as tar:
        assert any(m.name.endswith(".npy.zst") for m in tar.getmembers())
    sample = next(iter(wds.WebDataset(str(next((tmp_path / "raw-zstd").glob("shard-*.tar"))), shardshuffle=False)))
    assert decode_raw_zstd(sample["npy.zst"]).shape == (64, 64)  # plain webdataset hands out the member


def test_resume_is_exact_with_raw_zstd(tmp_path):
    write_phantom_shards(tmp_path, 20, seed=2, image_size=64, shard_max_count=5, image_format="raw-zstd")

    def loader():
        return make_pretrain_loader(PretrainStream(str(tmp_path), img_size=32, mask_patch_size=8, seed=5,
                                                   shuffle_buffer=6), batch_size=3, num_workers=1)

    full = list(loader())
    first = loader()
    it = iter(first)
    head = [next(it) for _ in range(2)]
    state = first.state_dict()
    del it
    resumed = loader()
    resumed.load_state_dict(state)
    rest = list(resumed)
    assert [b["key"] for b in head + rest] == [b["key"] for b in full]
    for a, b in zip(head + rest, full):
        assert torch.equal(a["image"], b["image"]) and torch.equal(a["mask"], b["mask"])


def test_cli_build_and_phantom_take_the_format(tmp_path):
    out = tmp_path / "ph"
    proc = subprocess.run([sys.executable, "-m", "echocare", "shards", "phantom", "--n", "3", "--size", "64",
                           "--out", str(out), "--format", "raw-zstd"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    with tarfile.open(next(out.glob("shard-*.tar"))) as tar:
        names = tar.getnames()
    assert sum(n.endswith(".npy.zst") for n in names) == 3
    bad = subprocess.run([sys.executable, "-m", "echocare", "shards", "phantom", "--n", "3", "--out", str(out),
                          "--format", "webp"], capture_output=True, text=True)
    assert bad.returncode == 2
