"""The fast tar reader agrees with tarfile/webdataset and rejects damaged archives."""

from __future__ import annotations

import io
import tarfile

import pytest

from echocare.data.tarstream import iter_tar_members, iter_tar_samples


def make_tar(path, members, fmt=tarfile.PAX_FORMAT):
    with tarfile.open(path, "w", format=fmt) as tf:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        d = tarfile.TarInfo("somedir")
        d.type = tarfile.DIRTYPE
        tf.addfile(d)


LONG = "ds/" + "x" * 150 + "/img_f3"


@pytest.mark.parametrize("fmt", [tarfile.PAX_FORMAT, tarfile.GNU_FORMAT, tarfile.USTAR_FORMAT])
def test_members_match_tarfile(tmp_path, fmt):
    members = [("a/k1.png", b"\x89PNG" * 100), ("a/k1.json", b"{}"), ("a/k2.png", b""), ("a/k2.json", b"[1]" * 300)]
    if fmt != tarfile.USTAR_FORMAT:
        members += [(LONG + ".png", b"p" * 513), (LONG + ".json", b"{}")]
    make_tar(tmp_path / "x.tar", members, fmt)
    with open(tmp_path / "x.tar", "rb") as f:
        assert list(iter_tar_members(f)) == members


def test_samples_grouped_by_key(tmp_path):
    make_tar(tmp_path / "x.tar", [("d/k1.png", b"1"), ("d/k1.JSON", b"{}"), ("d/k2.png", b"2"),
                                  (LONG + ".png", b"3"), (LONG + ".json", b"{}")])
    samples = list(iter_tar_samples(str(tmp_path / "x.tar")))
    assert [s["__key__"] for s in samples] == ["d/k1", "d/k2", LONG]
    assert samples[0]["json"] == b"{}" and samples[1] == {"__key__": "d/k2", "__url__": str(tmp_path / "x.tar"),
                                                          "png": b"2"}


def test_truncated_and_corrupt_archives_raise(tmp_path):
    make_tar(tmp_path / "x.tar", [("d/k1.png", b"1" * 2000), ("d/k1.json", b"{}")])
    raw = (tmp_path / "x.tar").read_bytes()
    (tmp_path / "cut.tar").write_bytes(raw[:1500])
    with pytest.raises(ValueError, match="truncated"):
        list(iter_tar_samples(str(tmp_path / "cut.tar")))
    bad = bytearray(raw)
    bad[5] ^= 0xFF  # flip bits inside the first header name
    (tmp_path / "bad.tar").write_bytes(bytes(bad))
    with pytest.raises(ValueError, match="checksum"):
        list(iter_tar_samples(str(tmp_path / "bad.tar")))


def test_duplicate_extension_in_a_key_raises(tmp_path):
    make_tar(tmp_path / "x.tar", [("d/k1.png", b"1"), ("d/k1.png", b"2")])
    with pytest.raises(ValueError, match="duplicate"):
        list(iter_tar_samples(str(tmp_path / "x.tar")))


def test_pipe_urls_work(tmp_path):
    make_tar(tmp_path / "x.tar", [("d/k1.png", b"1"), ("d/k1.json", b"{}")])
    samples = list(iter_tar_samples(f"pipe:cat {tmp_path / 'x.tar'}"))
    assert [s["__key__"] for s in samples] == ["d/k1"]


def _offsets(path):
    with tarfile.open(path) as tf:
        return [m.offset for m in tf.getmembers()]


def test_cut_at_member_boundary_and_zeroed_header_raise_after_the_good_samples(tmp_path):
    members = [(f"d/k{i}.{ext}", b"x" * 700) for i in range(4) for ext in ("png", "json")]
    make_tar(tmp_path / "x.tar", members)
    raw, off = (tmp_path / "x.tar").read_bytes(), _offsets(tmp_path / "x.tar")
    (tmp_path / "cut.tar").write_bytes(raw[: off[4]])  # ends cleanly before k2, with no end marker
    zeroed = bytearray(raw)
    zeroed[off[4]:off[4] + 512] = bytes(512)  # k2's header zeroed: looks like the end of the archive
    (tmp_path / "zero.tar").write_bytes(bytes(zeroed))
    for name, match in (("cut.tar", "end-of-archive marker"), ("zero.tar", "zero header block")):
        got = []
        with pytest.raises(ValueError, match=match):
            for sample in iter_tar_samples(str(tmp_path / name)):
                got.append(sample["__key__"])
        assert got == ["d/k0", "d/k1"], name  # k1, the last sample before the damage, is kept
