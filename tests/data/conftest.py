"""Fixtures for the shard-building tests: a small corpus with good and planted bad inputs."""

from __future__ import annotations

import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import yaml
from PIL import Image

from echocare.data.phantom import phantom_image


def write_mp4(path: Path, n_frames: int = 30, size: tuple[int, int] = (128, 96), seed: int = 0) -> None:
    """Write an H.264 (or MPEG-4) video of drifting speckle with PyAV."""
    import av

    rng = np.random.default_rng(seed)
    w, h = size
    base = rng.integers(40, 200, size=(h, w + n_frames), dtype=np.uint8)
    with av.open(str(path), "w") as out:
        codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
        stream = out.add_stream(codec, rate=25)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        for i in range(n_frames):
            gray = np.ascontiguousarray(base[:, i:i + w])
            frame = av.VideoFrame.from_ndarray(np.repeat(gray[..., None], 3, axis=2), format="rgb24")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def write_bad_dicom(path: Path) -> None:
    """A DICOM whose header is fine but whose JPEG pixel data is cut short."""
    import pydicom
    from pydicom import examples

    ds = pydicom.dcmread(examples.get_path("ybr_color"))
    ds.PixelData = ds.PixelData[:3000]
    ds.save_as(path)


def phantom_png(path: Path, seed: int, kind: str = "a4c", size: int = 96, mode: str = "L") -> np.ndarray:
    """Save a phantom image (as gray, RGB or 16-bit) and return its 8-bit pixels."""
    img, _ = phantom_image(np.random.default_rng(seed), size, kind)
    path.parent.mkdir(parents=True, exist_ok=True)
    if mode == "RGB":
        Image.fromarray(np.repeat(img[..., None], 3, axis=2)).save(path)
    elif mode == "I;16":
        Image.fromarray(img.astype(np.uint16) * 257).save(path)
    else:
        Image.fromarray(img).save(path)
    return img


@pytest.fixture(scope="session")
def shard_helpers() -> SimpleNamespace:
    """Input-making helpers for tests (conftest modules are not importable by name)."""
    return SimpleNamespace(write_mp4=write_mp4, write_bad_dicom=write_bad_dicom, phantom_png=phantom_png)


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A dataset tree with images, a video, a DICOM cine and planted bad inputs.

    Returns paths: ``root`` and ``manifest`` (the brief's manifest plus a video
    and a DICOM dataset).
    """
    from pydicom import examples

    root = tmp_path_factory.mktemp("corpus")
    pocus = root / "pocus"
    a = phantom_png(pocus / "p01" / "lung_a.png", 1, "liver")
    phantom_png(pocus / "p01" / "lung_b.png", 2, "kidney", mode="RGB")
    phantom_png(pocus / "p02" / "lung_c.png", 3, "thyroid", mode="I;16")
    phantom_png(pocus / "p02" / "lung_d.png", 4, "breast")
    phantom_png(pocus / "p03" / "heart_a4c.png", 5, "a4c")
    Image.fromarray(a).save(pocus / "p03" / "copy_of_a.png")  # exact duplicate (other file)
    near = a.astype(np.int16)
    near[10:12, 10:12] += 9  # a few pixels changed: same perceptual hash, different bytes
    Image.fromarray(np.clip(near, 0, 255).astype(np.uint8)).save(pocus / "p03" / "near_a.png")
    bad = pocus / "bad"
    bad.mkdir()
    good_bytes = (pocus / "p01" / "lung_a.png").read_bytes()
    (bad / "truncated.png").write_bytes(good_bytes[: len(good_bytes) // 2])
    (bad / "empty.png").write_bytes(b"")
    (bad / "text.png").write_text("this is not an image\n")
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(bad / "black.png")
    (root / "video").mkdir()
    write_mp4(root / "video" / "clip.mp4", 30)
    (root / "dicom").mkdir()
    shutil.copy(examples.get_path("ybr_color"), root / "dicom" / "echo.dcm")
    write_bad_dicom(root / "dicom" / "broken.dcm")
    manifest = {
        "image_size": 64,
        "shard_max_count": 4,
        "datasets": [
            {"name": "pocus_frames", "root": "pocus", "kind": "images", "include": ["**/*.png"],
             "label": "thorax/lung", "frame_stride": 10, "near_duplicates": 0.95,
             "labels": [{"regex": "heart_a4c", "path": "thorax/heart/a4c"}],
             "group_regex": "^(p\\d+)/", "metadata": {"modality": "b-mode", "device": "phantom", "licence": "CC0"}},
            {"name": "clips", "root": "video", "kind": "video", "include": ["*.mp4"], "label": "thorax/heart",
             "frame_stride": 10},
            {"name": "echo_dicom", "root": "dicom", "kind": "dicom", "frame_stride": 10,
             "label": "thorax/heart", "metadata": {"modality": "Doppler", "country": "XX"}},
        ],
    }
    (root / "manifest.yaml").write_text(yaml.safe_dump(manifest, sort_keys=False))
    return {"root": root, "manifest": root / "manifest.yaml"}
