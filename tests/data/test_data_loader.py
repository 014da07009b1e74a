"""PretrainStream / make_pretrain_loader: round trip, splitting, corrupt samples, resume, weights."""

from __future__ import annotations

import io
import json
import os
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
import webdataset as wds
from PIL import Image

from echocare.data.loader import PretrainStream, make_pretrain_loader
from echocare.ontology import Ontology

NODES = [
    {"id": "abdomen", "name": "Abdomen", "level": 0, "parent": None, "synonyms": []},
    {"id": "abdomen/liver", "name": "Liver", "level": 1, "parent": "abdomen", "synonyms": []},
    {"id": "abdomen/kidney", "name": "Kidney", "level": 1, "parent": "abdomen", "synonyms": []},
    {"id": "thorax", "name": "Thorax", "level": 0, "parent": None, "synonyms": []},
    {"id": "thorax/heart", "name": "Heart", "level": 1, "parent": "thorax", "synonyms": []},
    {"id": "thorax/heart/a4c", "name": "A4C", "level": 2, "parent": "thorax/heart", "synonyms": []},
]
LABELS = {"liver": (["abdomen/liver"], ["abdomen/liver", "abdomen/kidney"]),
          "heart": (["thorax/heart/a4c"], None), "plain": ([], None)}


@pytest.fixture(scope="module")
def onto() -> Ontology:
    return Ontology.from_nodes(NODES, name="tiny")


def pixel_value(i: int) -> int:
    return (37 * i + 11) % 251


def png_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def write_shards(root: Path, sizes: list[int], datasets: list[str] | None = None, side: int = 32,
                 corrupt: dict[int, str] | None = None, rgb_every: int = 0) -> list[str]:
    """Shards with ``sizes[s]`` samples each (open_clip style TarWriter) + index.json.

    Sample ``i`` (global) is a constant image of value ``pixel_value(i)`` except a zero top row and a zero
    column 4 (the first column kept by the centre square crop), so flips are visible; of dataset
    ``datasets[s]`` (default: cycling liver/heart/plain).
    ``corrupt`` maps global indices to ``"json"`` (broken JSON), ``"png"`` (bad bytes) or ``"nopng"``.
    """
    root.mkdir(parents=True, exist_ok=True)
    corrupt = corrupt or {}
    names, shard_entries, ds_counts, i = [], [], Counter(), 0
    for s, n in enumerate(sizes):
        name = f"shard-{s:06d}.tar"
        with wds.TarWriter(str(root / name)) as sink:
            for _ in range(n):
                ds = datasets[s] if datasets else list(LABELS)[i % 3]
                paths, space = LABELS.get(ds, ([], None))
                arr = np.full((side, side + 8), pixel_value(i), dtype=np.uint8)
                arr[0, :] = 0
                arr[:, 4] = 0
                if rgb_every and i % rgb_every == 0:
                    arr = np.stack([arr] * 3, axis=-1)
                meta = json.dumps({"dataset": ds, "source": f"img{i}.png", "frame": None, "paths": paths,
                                   "label_space": space, "metadata": {"modality": "B"}}).encode()
                sample = {"__key__": f"{ds}/img_{i:05d}", "png": png_bytes(arr), "json": meta}
                kind = corrupt.get(i)
                if kind == "json":
                    sample["json"] = b'{"dataset": "liver", "paths": ['
                elif kind == "png":
                    sample["png"] = sample["png"][:40] + b"garbage" * 10
                elif kind == "nopng":
                    del sample["png"]
                sink.write(sample)
                ds_counts[ds] += 1
                i += 1
        names.append(str(root / name))
        shard_entries.append({"name": name, "count": n, "bytes": os.path.getsize(root / name), "sha256": ""})
    index = {"version": 1, "ontology_hash": None, "shards": shard_entries, "datasets": dict(ds_counts),
             "labels": {}, "total": sum(sizes), "image_size": side}
    (root / "index.json").write_text(json.dumps(index))
    return names


def collect(loader) -> list[dict]:
    return [b for b in loader]


def keys_of(batches) -> list[str]:
    return [k for b in batches for k in b["key"]]


def assert_same_batches(a: list[dict], b: list[dict]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x["key"] == y["key"]
        assert torch.equal(x["image"], y["image"])
        assert torch.equal(x["mask"], y["mask"])
        if "targets" in x:
            assert torch.equal(x["targets"], y["targets"])


def test_round_trip_values_shapes_targets(tmp_path, onto):
    write_shards(tmp_path, [5, 4], side=32, rgb_every=4)
    ds = PretrainStream(str(tmp_path), ontology=onto, img_size=32, patch_size=4, mask_patch_size=8,
                        augment=False, shuffle_buffer=0, shardshuffle=False)
    batches = collect(make_pretrain_loader(ds, batch_size=4, num_workers=0))
    assert [len(b["key"]) for b in batches] == [4, 4, 1]
    for b in batches:
        n = len(b["key"])
        assert b["image"].shape == (n, 1, 32, 32) and b["image"].dtype == torch.float32
        assert b["mask"].shape == (n, 8, 8)
        assert b["targets"].shape == (n, len(onto))
        for j, key in enumerate(b["key"]):
            i = int(key.rsplit("_", 1)[1])
            dataset = key.split("/")[0]
            assert b["dataset"][j] == dataset
            # augment=False: centre square crop of a constant image keeps its value exactly (RGB -> L too)
            img = b["image"][j, 0]
            assert torch.allclose(img[1:, 1:], torch.full_like(img[1:, 1:], pixel_value(i) / 255.0))
            assert img[0].eq(0).all() and img[:, 0].eq(0).all()
            paths, space = LABELS[dataset]
            expected = onto.encode(paths, space) if (paths or space) else torch.full((len(onto),), -1.0)
            assert torch.equal(b["targets"][j], expected)
    assert sorted(keys_of(batches)) == sorted(f"{list(LABELS)[i % 3]}/img_{i:05d}" for i in range(9))
    assert torch.equal(batches[0]["targets"][0], torch.tensor([1.0, 1.0, 0.0, -1.0, -1.0, -1.0]))


def test_iterating_stream_gives_single_samples(tmp_path):
    write_shards(tmp_path, [3])
    ds = PretrainStream(str(tmp_path), img_size=32, patch_size=4, mask_patch_size=8, shuffle_buffer=0)
    samples = list(ds)
    assert len(samples) == 3 and "targets" not in samples[0]
    assert samples[0]["image"].shape == (1, 32, 32) and samples[0]["mask"].shape == (8, 8)
    assert isinstance(samples[0]["key"], str)


@pytest.mark.parametrize("num_workers", [0, 2])
def test_every_sample_once_across_ranks_and_workers(tmp_path, num_workers):
    sizes = [7, 3, 5, 9, 4, 6]
    write_shards(tmp_path, sizes)
    seen: list[str] = []
    for rank in range(2):
        ds = PretrainStream(str(tmp_path), img_size=32, patch_size=4, mask_patch_size=8, shuffle_buffer=8,
                            seed=3, rank=rank, world_size=2)
        loader = make_pretrain_loader(ds, batch_size=4, num_workers=num_workers, even_batches=False)
        expected_len, expected_samples = len(loader), ds.num_samples()
        batches = collect(loader)
        assert len(batches) == expected_len
        assert expected_samples == len(keys_of(batches))
        seen += keys_of(batches)
    assert len(seen) == sum(sizes) and len(set(seen)) == sum(sizes)


def test_even_batches_caps_ranks_to_the_same_length(tmp_path):
    write_shards(tmp_path, [8, 8, 8, 2])
    lengths = []
    for rank in range(2):
        ds = PretrainStream(str(tmp_path), img_size=32, patch_size=4, mask_patch_size=8, rank=rank, world_size=2,
                            shardshuffle=False)
        loader = make_pretrain_loader(ds, batch_size=4, num_workers=0)
        lengths.append((len(loader), len(collect(loader))))
    assert lengths == [(3, 3), (3, 3)]  # rank 0 holds 16 samples (4 batches), rank 1 holds 10 (3 batches)


@pytest.mark.parametrize("num_workers", [0, 2])
def test_corrupt_samples_are_skipped_and_counted(tmp_path, num_workers):
    write_shards(tmp_path, [6, 6], corrupt={1: "json", 4: "png", 8: "nopng", 9: "png"})
    ds = PretrainStream(str(tmp_path), img_size=32, patch_size=4, mask_patch_size=8, shuffle_buffer=4)
    loader = make_pretrain_loader(ds, batch_size=3, num_workers=num_workers)
    keys = keys_of(collect(loader))
    assert len(keys) == 8 and len(set(keys)) == 8
    assert not {k for k in keys if int(k.rsplit("_", 1)[1]) in (1, 4, 8, 9)}
    assert loader.stats["skipped"] == 4
    assert loader.stats["skipped_by_reason"] == {"bad_json": 1, "bad_image": 2, "incomplete_sample": 1}


def test_unknown_label_path_is_a_counted_skip(tmp_path, onto):
    write_shards(tmp_path, [4], datasets=["liver"])
    # rewrite one shard with a path that the ontology does not know
    with wds.TarWriter(str(tmp_path / "shard-000001.tar")) as sink:
        meta = {"dataset": "liver", "paths": ["abdomen/spleen"], "label_space": None}
        sink.write({"__key__": "liver/odd", "png": png_bytes(np.zeros((32, 32), np.uint8)),
                    "json": json.dumps(meta).encode()})
    ds = PretrainStream(str(tmp_path), ontology=onto, img_size=32, patch_size=4, mask_patch_size=8, index={
        "shards": [{"name": "shard-000000.tar", "count": 4}, {"name": "shard-000001.tar", "count": 1}]})
    loader = make_pretrain_loader(ds, batch_size=8)
    assert len(keys_of(collect(loader))) == 4
    assert loader.stats["skipped_by_reason"] == {"bad_label": 1}


def test_mask_geometry_and_ratio_in_batches(tmp_path):
    write_shards(tmp_path, [4], side=64)
    ds = PretrainStream(str(tmp_path), img_size=64, patch_size=2, mask_patch_size=16, mask_ratio=0.5)
    batch = next(iter(make_pretrain_loader(ds, batch_size=4)))
    mask = batch["mask"]
    assert mask.shape == (4, 32, 32)
    assert torch.all(mask.flatten(1).mean(1) == 0.5)
    blocks = mask.view(4, 4, 8, 4, 8)  # 16-px blocks = 8×8 tokens each must be constant
    assert torch.all(blocks.amax(dim=(2, 4)) == blocks.amin(dim=(2, 4)))


def test_augmentation_is_deterministic_under_seed(tmp_path):
    write_shards(tmp_path, [10, 10])

    def run(seed: int) -> list[dict]:
        ds = PretrainStream(str(tmp_path), img_size=32, patch_size=4, mask_patch_size=8, seed=seed,
                            shuffle_buffer=6, jitter_p=0.5, crop_p=0.0)
        return collect(make_pretrain_loader(ds, batch_size=5, num_workers=2))

    a, b, c = run(1), run(1), run(2)
    assert_same_batches(a, b)
    assert keys_of(a) != keys_of(c) or not all(torch.equal(x["image"], y["image"]) for x, y in zip(a, c))
    vflip = [bool(img[0, 0].ne(0).any()) for x in a for img in x["image"]]  # zero top row moved
    hflip = [bool(img[0, :, 0].ne(0).any()) for x in a for img in x["image"]]  # zero left column moved
    assert 3 <= sum(vflip) <= 17 and 3 <= sum(hflip) <= 17 and vflip != hflip


@pytest.mark.parametrize("num_workers", [0, 2])
@pytest.mark.parametrize("resampled", [False, True])
def test_resume_yields_exactly_the_uninterrupted_batches(tmp_path, num_workers, resampled):
    write_shards(tmp_path, [9, 2, 6, 5], corrupt={3: "png", 12: "json"})
    kw = dict(img_size=32, patch_size=4, mask_patch_size=8, seed=7, shuffle_buffer=5, resampled=resampled,
              epoch_length=23 if resampled else None)

    def fresh():
        return make_pretrain_loader(PretrainStream(str(tmp_path), **kw), batch_size=3, num_workers=num_workers)

    full_loader = fresh()
    full = collect(full_loader) + collect(full_loader)  # two epochs
    per_epoch = len(full) // 2
    # 1: start; per_epoch - 2: after one worker ran dry; per_epoch: saved at the very end of an epoch
    ks = (1, per_epoch - 2, per_epoch, per_epoch + 1) if num_workers == 0 else (1, per_epoch - 2, per_epoch)
    for k in ks:
        first = fresh()
        it = iter(first)
        got = [next(it) for _ in range(k)] if k <= per_epoch else collect(first) + [next(iter(first))]
        state = json.loads(json.dumps(first.state_dict()))  # must survive JSON
        resumed = fresh()
        resumed.load_state_dict(state)
        rest = collect(resumed)
        if k < per_epoch:
            rest += collect(resumed)
        assert_same_batches(got + rest, full)
        assert resumed.stats["skipped"] == full_loader.stats["skipped"]


def test_load_state_dict_rejects_a_different_stream(tmp_path):
    write_shards(tmp_path, [4])
    a = make_pretrain_loader(PretrainStream(str(tmp_path), img_size=32, mask_patch_size=8), batch_size=2)
    b = make_pretrain_loader(PretrainStream(str(tmp_path), img_size=32, mask_patch_size=8), batch_size=2,
                             num_workers=1)
    with pytest.raises(ValueError, match="num_workers"):
        b.load_state_dict(a.state_dict())


def test_dataset_weights_set_the_mixture(tmp_path):
    # 3 datasets of 240 / 48 / 12 images (natural shares .80 / .16 / .04)
    write_shards(tmp_path, [120, 120, 48, 12], datasets=["big", "big", "mid", "small"], side=16)
    kw = dict(img_size=16, patch_size=4, mask_patch_size=8, augment=False, shuffle_buffer=50)
    # temperature 0 -> uniform over datasets; repeat factors 1.67 / 8.33 / 33.3 with stochastic rounding give
    # per-dataset standard deviations of about 7 / 3 / 2 samples around 400 each
    ds = PretrainStream(str(tmp_path), dataset_weights="temperature:0", epoch_length=1200, **kw)
    counts = Counter(d for b in make_pretrain_loader(ds, batch_size=100, num_workers=2) for d in b["dataset"])
    for name in ("big", "mid", "small"):
        assert abs(counts[name] - 400) < 40, counts
    # explicit weights, epoch = index total (300): shares 1:1:2 -> 75 / 75 / 150 (sd about 7 / 3 / 1)
    ds = PretrainStream(str(tmp_path), dataset_weights={"big": 1, "mid": 1, "small": 2}, **kw)
    assert len(make_pretrain_loader(ds, batch_size=30)) == 10
    counts = Counter(d for b in make_pretrain_loader(ds, batch_size=30) for d in b["dataset"])
    assert abs(counts["big"] - 75) < 30 and abs(counts["mid"] - 75) < 20 and abs(counts["small"] - 150) < 15, counts


def test_dataset_weights_in_resampled_mode(tmp_path):
    # many 4-sample shards so shard-level clumps stay small; temperature 0.5 -> shares .58 / .26 / .13
    write_shards(tmp_path, [4] * 75, datasets=["big"] * 60 + ["mid"] * 12 + ["small"] * 3, side=16)
    ds = PretrainStream(str(tmp_path), img_size=16, patch_size=4, mask_patch_size=8, augment=False,
                        dataset_weights="temperature:0.5", resampled=True, epoch_length=2000, shuffle_buffer=100)
    counts = Counter(d for b in make_pretrain_loader(ds, batch_size=200, num_workers=2) for d in b["dataset"])
    assert sum(counts.values()) == 2000
    shares = {d: c / 2000 for d, c in counts.items()}
    assert 0.45 < shares["big"] < 0.70 and 0.16 < shares["mid"] < 0.36 and 0.05 < shares["small"] < 0.24, shares


def test_resampled_epoch_length_per_rank(tmp_path):
    write_shards(tmp_path, [5, 5])
    for rank in range(2):
        ds = PretrainStream(str(tmp_path), img_size=32, patch_size=4, mask_patch_size=8, resampled=True,
                            epoch_length=22, rank=rank, world_size=2, shuffle_buffer=10)
        loader = make_pretrain_loader(ds, batch_size=4, num_workers=2)
        assert len(loader) == 6
        batches = collect(loader)
        assert [len(b["key"]) for b in batches] == [4, 4, 4, 4, 4, 2]
        assert loader.epoch == 1 and len(collect(loader)) == 6
    dropped = make_pretrain_loader(ds, batch_size=4, drop_last=True)
    assert len(dropped) == 5 and len(collect(dropped)) == 5


def test_bad_specs_raise_clear_errors(tmp_path):
    write_shards(tmp_path, [2])
    with pytest.raises(FileNotFoundError, match="shard-000009"):
        PretrainStream(str(tmp_path / "shard-000009.tar"))
    with pytest.raises(ValueError, match="epoch_length"):
        PretrainStream(str(tmp_path), resampled=True)
    with pytest.raises(ValueError, match="nosuch"):
        PretrainStream(str(tmp_path), dataset_weights={"nosuch": 1.0})
    with pytest.raises(ValueError, match="mask_patch_size"):
        PretrainStream(str(tmp_path), img_size=64, mask_patch_size=48)
    brace = str(tmp_path / "shard-{000000..000000}.tar")
    assert PretrainStream(brace).urls == [str(tmp_path / "shard-000000.tar")]


def _member_offsets(path) -> list[int]:
    import tarfile

    with tarfile.open(path) as tf:
        return [m.offset for m in tf.getmembers()]


def _damaged_loader(tmp_path, damage, num_workers=0, **kw):
    names = write_shards(tmp_path, [6, 6])
    raw = bytearray(Path(names[1]).read_bytes())
    Path(names[1]).write_bytes(bytes(damage(raw, _member_offsets(names[1]))))
    ds = PretrainStream(str(tmp_path), img_size=32, patch_size=4, mask_patch_size=8, shuffle_buffer=1,
                        shardshuffle=False, **kw)
    loader = make_pretrain_loader(ds, batch_size=4, num_workers=num_workers)
    return loader, sorted(int(k.rsplit("_", 1)[1]) for k in keys_of(collect(loader)))


def test_truncated_shard_is_counted_and_the_rest_streams(tmp_path):
    loader, idx = _damaged_loader(tmp_path, lambda raw, off: raw[: off[7] + 300])  # cut inside sample 9's json
    # sample 9 is cut (seen incomplete); 10 and 11 are lost; everything before the damage streams
    assert idx == list(range(9))
    assert loader.stats["skipped_by_reason"] == {"incomplete_sample": 1, "truncated-shard": 2}
    assert loader.stats["damaged_shards"] == {"shard-000001.tar": 2}


@pytest.mark.parametrize("num_workers", [0, 2])
def test_shard_cut_at_a_member_boundary_counts_every_lost_sample(tmp_path, num_workers, caplog):
    # the stream ends cleanly at a header boundary (before sample 8): a plain tar reader would stop quietly
    with caplog.at_level("WARNING"):
        loader, idx = _damaged_loader(tmp_path, lambda raw, off: raw[: off[4]], num_workers)
    assert idx == list(range(8))  # samples 6 and 7, right before the cut, are kept
    assert loader.stats["skipped_by_reason"] == {"truncated-shard": 4}
    assert loader.stats["damaged_shards"] == {"shard-000001.tar": 4}
    if num_workers == 0:
        assert sum("shard-000001.tar damaged: 4 of 6 samples lost" in r.getMessage() for r in caplog.records) == 1


def test_zeroed_header_counts_every_lost_sample(tmp_path):
    def zero(raw, off):
        raw[off[6]:off[6] + 512] = bytes(512)  # header of sample 9's png: looks like the end of the archive
        return raw

    loader, idx = _damaged_loader(tmp_path, zero)
    assert idx == list(range(9))
    assert loader.stats["skipped_by_reason"] == {"truncated-shard": 3}
    state = loader.state_dict()
    assert state["damaged_shards"] == {"shard-000001.tar": 3}


def test_verify_skips_a_shard_whose_checksum_differs(tmp_path):
    from echocare.data.writer import sha256_file

    names = write_shards(tmp_path, [3, 3])
    index = json.loads((tmp_path / "index.json").read_text())
    for entry, name in zip(index["shards"], names):
        entry["sha256"] = sha256_file(name)
    index["shards"][0]["sha256"] = "0" * 64
    (tmp_path / "index.json").write_text(json.dumps(index))
    ds = PretrainStream(str(tmp_path), img_size=32, patch_size=4, mask_patch_size=8, verify=True)
    loader = make_pretrain_loader(ds, batch_size=2)
    assert sorted(keys_of(collect(loader))) == sorted(f"{list(LABELS)[i % 3]}/img_{i:05d}" for i in (3, 4, 5))
    assert loader.stats["skipped_by_reason"] == {"checksum-mismatch": 3}
    index["shards"][1]["sha256"] = ""
    with pytest.raises(ValueError, match="sha256"):
        PretrainStream(str(tmp_path), verify=True, index=index)


def _bomb_png(width: int = 20000, height: int = 20000) -> bytes:
    """A PNG header claiming width x height 8-bit gray (400 Mpx: over PIL's decompression-bomb limit)."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def test_decompression_bomb_is_a_counted_skip(tmp_path):
    names = write_shards(tmp_path, [3])
    with wds.TarWriter(names[0]) as sink:  # rewrite with sample 1 replaced by an oversized PNG
        for i in range(3):
            meta = json.dumps({"dataset": "plain", "paths": []}).encode()
            png = _bomb_png() if i == 1 else png_bytes(np.full((32, 40), 9, np.uint8))
            sink.write({"__key__": f"plain/img_{i:05d}", "png": png, "json": meta})
    ds = PretrainStream(str(tmp_path), img_size=32, patch_size=4, mask_patch_size=8)
    loader = make_pretrain_loader(ds, batch_size=2)
    assert sorted(keys_of(collect(loader))) == ["plain/img_00000", "plain/img_00002"]
    assert loader.stats["skipped_by_reason"] == {"decompression-bomb": 1}


def test_several_shard_directories_merge_their_indexes(tmp_path):
    write_shards(tmp_path / "a", [3, 2], datasets=["liver", "liver"])
    write_shards(tmp_path / "b", [4], datasets=["heart"])
    ds = PretrainStream([str(tmp_path / "a"), str(tmp_path / "b")], img_size=32, patch_size=4, mask_patch_size=8,
                        dataset_weights="temperature:0")
    assert ds.shard_sizes == [3, 2, 4] and ds.dataset_counts == {"liver": 5, "heart": 4}
    assert ds.factors["liver"] == pytest.approx(0.9) and ds.factors["heart"] == pytest.approx(9 / 8)


def test_pipe_urls_with_an_explicit_index(tmp_path):
    names = write_shards(tmp_path, [3, 2])
    urls = [f"pipe:cat {n}" for n in names]
    ds = PretrainStream(urls, index=str(tmp_path / "index.json"), img_size=32, patch_size=4, mask_patch_size=8)
    loader = make_pretrain_loader(ds, batch_size=2)
    assert ds.shard_sizes == [3, 2] and len(loader) == 3
    assert len(keys_of(collect(loader))) == 5


def test_config_crop_and_fit_settings_reach_the_stream(tmp_path):
    """data.crop_p / data.crop_scale / data.fit of a pretrain config drive the loader's augmentation."""
    from echocare.config import PretrainConfig, load_config
    from echocare.jobs.pretrain import build_pretrain_loader

    write_shards(tmp_path, [4])
    base = [f"data.shards={tmp_path}", "model.img_size=32", "data.mask_patch_size=8", "data.num_workers=0"]
    default = build_pretrain_loader(load_config(PretrainConfig, overrides=base), None, 0, 1).dataset.augmenter
    assert (default.crop_p, default.crop_scale, default.fit) == (0.5, (0.67, 1.0), "crop")
    cfg = load_config(PretrainConfig, overrides=[*base, "data.crop_p=1", "data.crop_scale=0.2,1", "data.fit=stretch"])
    aug = build_pretrain_loader(cfg, None, 0, 1).dataset.augmenter
    assert (aug.crop_p, aug.crop_scale, aug.fit) == (1.0, (0.2, 1.0), "stretch")
