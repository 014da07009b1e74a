"""Decoders (images, PyAV video, pydicom) and curation primitives."""

from __future__ import annotations

import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from echocare.data import curation
from echocare.data.sources import (
    SourceError,
    glob_regex,
    iter_dicom_frames,
    iter_video_frames,
    list_files,
    read_image,
)


def test_read_image_formats(tmp_path: Path, shard_helpers: SimpleNamespace) -> None:
    phantom_png = shard_helpers.phantom_png
    ref = phantom_png(tmp_path / "g.png", 0)
    phantom_png(tmp_path / "rgb.png", 0, mode="RGB")
    phantom_png(tmp_path / "w16.png", 0, mode="I;16")
    Image.fromarray(ref).save(tmp_path / "g.bmp")
    Image.fromarray(ref).save(tmp_path / "g.tiff")
    for name in ("g.png", "rgb.png", "w16.png", "g.bmp", "g.tiff"):
        gray = curation.to_gray_uint8(read_image(tmp_path / name))
        assert gray.shape == ref.shape and gray.dtype == np.uint8
        assert np.abs(gray.astype(int) - ref).max() <= 1, name


@pytest.mark.parametrize(
    ("content", "reason"),
    [(b"", "empty-file"), (b"hello, not an image", "not-an-image"), ("half", "truncated")],
)
def test_read_image_failures(tmp_path: Path, content: object, reason: str, shard_helpers: SimpleNamespace) -> None:
    p = tmp_path / "bad.png"
    if content == "half":
        shard_helpers.phantom_png(p, 0)
        content = p.read_bytes()[: len(p.read_bytes()) // 2]
    p.write_bytes(content)  # type: ignore[arg-type]
    with pytest.raises(SourceError) as err:
        read_image(p)
    assert err.value.reason == reason


def test_video_frames_at_stride(tmp_path: Path, shard_helpers: SimpleNamespace) -> None:
    p = tmp_path / "clip.mp4"
    shard_helpers.write_mp4(p, 30)
    frames = list(iter_video_frames(p, stride=10))
    assert [i for i, _ in frames] == [0, 10, 20]
    assert all(f.shape == (96, 128) and f.dtype == np.uint8 for _, f in frames)
    assert not np.array_equal(frames[0][1], frames[1][1])
    assert [i for i, _ in iter_video_frames(p, stride=7)] == [0, 7, 14, 21, 28]
    data = p.read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[: len(data) // 2])
    with pytest.raises(SourceError) as err:
        list(iter_video_frames(tmp_path / "cut.mp4"))
    assert err.value.reason in ("not-a-video", "decode-error")
    (tmp_path / "fake.mp4").write_text("not a video")
    with pytest.raises(SourceError) as err:
        list(iter_video_frames(tmp_path / "fake.mp4"))
    assert err.value.reason == "not-a-video"


def test_real_ultrasound_dicom_multiframe(tmp_path: Path) -> None:
    from pydicom import examples

    frames = list(iter_dicom_frames(examples.get_path("ybr_color"), stride=10))
    assert [i for i, _ in frames] == [0, 10, 20]
    rgb = frames[0][1]
    assert rgb.shape == (240, 320, 3)
    # YBR_FULL_422 converted to RGB: an echo is gray, so the channels agree
    assert np.abs(rgb[..., 0].astype(int) - rgb[..., 2].astype(int)).mean() < 3
    gray = curation.to_gray_uint8(rgb)
    assert curation.count_nonzero(gray) > 1000
    # the scan-area crop keeps the fan and drops the burned-in text columns left and right of it
    _, (top, left, bottom, right) = curation.crop_scan_area(gray)
    assert 40 < left < 120 and 200 < right < 260 and bottom - top > 150
    assert gray[:, :left].max() > 100  # there was bright text in the cut-off margin


def test_single_frame_and_broken_dicom(tmp_path: Path, shard_helpers: SimpleNamespace) -> None:
    from pydicom import examples

    single = list(iter_dicom_frames(examples.get_path("rgb_color"), stride=10))
    assert [i for i, _ in single] == [None]
    shard_helpers.write_bad_dicom(tmp_path / "broken.dcm")
    with pytest.raises(SourceError) as err:
        list(iter_dicom_frames(tmp_path / "broken.dcm"))
    assert err.value.reason == "dicom-decode-error" and err.value.frame == 0
    (tmp_path / "text.dcm").write_text("plain text")
    with pytest.raises(SourceError) as err:
        list(iter_dicom_frames(tmp_path / "text.dcm"))
    assert err.value.reason == "not-dicom"


def test_list_files_globs(tmp_path: Path) -> None:
    for rel in ("a.png", "x/b.PNG", "x/y/c.png", "x/d.jpg", ".hidden/e.png", "x/.f.png"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"")
    assert list_files(tmp_path, ["**/*.png"]) == ["a.png", "x/b.PNG", "x/y/c.png"]
    assert list_files(tmp_path, ["*.png"]) == ["a.png"]
    assert list_files(tmp_path, ["x/**"], ["**/*.jpg"]) == ["x/b.PNG", "x/y/c.png"]
    assert glob_regex("x/[!a]?.png").match("x/b1.png") and not glob_regex("x/[!a]?.png").match("x/a1.png")


def test_to_gray_and_resize() -> None:
    rgb = np.zeros((10, 20, 3), np.uint8)
    rgb[..., 1] = 200
    assert curation.to_gray_uint8(rgb).max() == round(0.587 * 200)
    assert curation.to_gray_uint8(np.full((4, 6), 4000, np.uint16)).max() == round(4000 * 255 / 4095)  # 12-bit
    assert curation.to_gray_uint8(np.full((4, 6), 200 * 257, np.uint16)).max() == 200  # 16-bit
    assert curation.to_gray_uint8(np.full((4, 6), 0.5, np.float32)).max() == 128  # float in [0, 1]
    with pytest.raises(ValueError, match="not a 2-D image"):
        curation.to_gray_uint8(np.zeros((2, 3, 5)))
    img = np.random.default_rng(0).integers(0, 255, (300, 500), dtype=np.uint8)
    assert curation.resize_shorter(img, 256).shape == (256, 427)
    assert curation.resize_shorter(img.T, 64).shape == (107, 64)
    assert curation.resize_shorter(img, None) is img


def test_crop_scan_area_strips_text_and_border() -> None:
    rng = np.random.default_rng(0)
    img = np.zeros((200, 300), np.uint8)
    img[40:180, 60:250] = rng.integers(30, 255, (140, 190))  # scan area with speckle
    img[50:60, 70:80] = 0  # dark hole inside the scan stays inside
    img[5:12, 5:60] = 255  # burned-in text top-left
    img[190:196, 270:295] = 200  # logo bottom-right
    cropped, box = curation.crop_scan_area(img)
    assert box == (40, 60, 180, 250) and cropped.shape == (140, 190)
    assert curation.crop_scan_area(np.zeros((50, 50), np.uint8))[1] == (0, 0, 50, 50)


def test_perceptual_hashes_and_near_index() -> None:
    rng = np.random.default_rng(1)
    a = phantom_png_array(1)
    noisy = np.clip(a.astype(int) + rng.integers(-3, 4, a.shape), 0, 255).astype(np.uint8)
    other = phantom_png_array(2, "thyroid")
    for fn in (curation.dhash, curation.phash):
        assert curation.similarity(fn(a), fn(noisy), 64) >= 0.95
        assert curation.similarity(fn(a), fn(other), 64) < 0.9
    assert curation.pixel_hash(a) != curation.pixel_hash(noisy)
    assert curation.pixel_hash(a) == curation.pixel_hash(a.copy())
    # band index agrees with brute force
    hashes = [int(h) for h in rng.integers(0, 2**62, 300)]
    hashes += [h ^ (1 << int(b)) ^ (1 << int(c)) for h, b, c in zip(hashes[:50], rng.integers(0, 64, 50),
                                                                   rng.integers(0, 64, 50))]
    index = curation.NearDuplicateIndex(0.95, 64)  # max distance 3
    assert index.max_distance == 3
    for i, h in enumerate(hashes):
        brute = next((f"k{j}" for j in range(i) if bin(hashes[j] ^ h).count("1") <= 3), None)
        assert index.query(h) == brute
        index.add(h, f"k{i}")


def phantom_png_array(seed: int, kind: str = "liver") -> np.ndarray:
    from echocare.data.phantom import phantom_image

    return phantom_image(np.random.default_rng(seed), 128, kind)[0]


def test_noise_frames_drops_minority_cluster() -> None:
    rng = np.random.default_rng(0)
    base = phantom_png_array(3)
    frames = [np.clip(base.astype(int) + rng.integers(-8, 9, base.shape), 0, 255).astype(np.uint8) for _ in range(12)]
    splash = np.full_like(base, 240)
    splash[40:60, 20:100] = 0  # a "menu screen"
    frames[3] = splash
    frames[9] = 255 - base
    flags = curation.noise_frames(frames)
    assert [i for i, f in enumerate(flags) if f] == [3, 9]
    # long videos cluster a subset: same decision
    feats = np.stack([curation.frame_features(f) for f in frames])
    assert curation.noise_flags(feats, max_frames=8) == flags
    # a video whose every frame differs a lot: no majority cluster, nothing dropped
    varied = [phantom_png_array(s, k) for s, k in enumerate(["liver", "thyroid", "a4c", "breast", "kidney"])]
    assert not any(curation.noise_frames(varied, eps=0.01))


def test_copy_of_real_dicom_is_not_modified(tmp_path: Path) -> None:
    from pydicom import examples

    src = Path(examples.get_path("ybr_color"))
    shutil.copy(src, tmp_path / "e.dcm")
    list(iter_dicom_frames(tmp_path / "e.dcm", stride=15))
    assert (tmp_path / "e.dcm").read_bytes() == src.read_bytes()


@pytest.mark.parametrize(("example", "cut"), [("ct", 4), ("ct", 500), ("ybr_color", 4), ("ybr_color", 5000)])
def test_dicom_cut_inside_pixel_data_is_truncated_pixel_data(tmp_path: Path, example: str, cut: int) -> None:
    from pydicom import examples

    raw = Path(examples.get_path(example)).read_bytes()
    (tmp_path / "cut.dcm").write_bytes(raw[: raw.find(b"\xe0\x7f\x10\x00") + cut])
    with pytest.raises(SourceError) as err:
        list(iter_dicom_frames(tmp_path / "cut.dcm"))
    assert err.value.reason == "truncated-pixel-data"
