"""Helpers for the catalogue tests: tiny synthetic replicas of published dataset layouts."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from echocare.data.phantom import phantom_image


def write_image(path: Path, seed: int, size: int = 80) -> None:
    """A distinct phantom B-mode image saved in the format its suffix names (png, jpg, tif)."""
    img, _ = phantom_image(np.random.default_rng(seed), size, "unlabeled")
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(path, quality=95) if path.suffix == ".jpg" else Image.fromarray(img).save(path)


def write_video(path: Path, seed: int, n_frames: int = 12, size: int = 80) -> None:
    """A short speckle video (mp4 / avi) written with PyAV."""
    import av

    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    base = rng.integers(40, 220, size=(size, size + n_frames), dtype=np.uint8)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=25)
        stream.width, stream.height, stream.pix_fmt = size, size, "yuv420p"
        for i in range(n_frames):
            gray = np.ascontiguousarray(base[:, i:i + size])
            frame = av.VideoFrame.from_ndarray(np.repeat(gray[..., None], 3, axis=2), format="rgb24")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def read_samples(shards: Path) -> list[dict]:
    """The JSON of every sample in a shard folder."""
    out = []
    for tar_path in sorted(shards.glob("shard-*.tar")):
        with tarfile.open(tar_path) as tar:
            for m in tar:
                if m.name.endswith(".json"):
                    out.append(json.loads(tar.extractfile(m).read()))
    return out


@pytest.fixture(scope="session")
def replica() -> SimpleNamespace:
    """Layout-writing helpers (conftest modules are not importable by name)."""
    return SimpleNamespace(image=write_image, video=write_video, samples=read_samples)
