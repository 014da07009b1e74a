"""Decode images, masks and videos of labeled datasets into model-ready tensors.

House decision: images become grayscale float in [0, 1] (8-bit / 255, 16-bit / 65535, RGB by
ITU-R 601 luma) and are resized to the model size; **no mean/std normalisation** anywhere.
Masks are resized with nearest-neighbour so class ids stay exact.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from echocare.data.labeled.records import frame_files, is_video_file
from echocare.data.sources import SourceError, read_image

__all__ = ["count_frames", "load_frames", "load_gray", "load_mask", "resize_image", "resize_mask", "to_unit_gray"]


def to_unit_gray(arr: np.ndarray) -> np.ndarray:
    """(H, W) or (H, W, 3) array of any dtype → (H, W) float32 grayscale in [0, 1]."""
    if arr.ndim == 3:
        arr = arr[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
        scale = 255.0 if arr.max(initial=0) <= 255.0 else 65535.0
    elif arr.dtype == np.uint8:
        scale = 255.0
    elif arr.dtype in (np.uint16, np.int32) or (arr.dtype.kind in "iu" and arr.max(initial=0) > 255):
        scale = 65535.0
    else:
        peak = float(np.nanmax(arr)) if arr.size else 1.0
        scale = 1.0 if peak <= 1.0 else (255.0 if peak <= 255.0 else peak)
    return np.clip(arr.astype(np.float32) / scale, 0.0, 1.0)


def load_gray(path: str | Path) -> np.ndarray:
    """Decode an image file to (H, W) float32 in [0, 1].

    Raises:
        SourceError: unreadable / undecodable file (reason + detail name the problem).
    """
    return to_unit_gray(read_image(path))


def load_mask(path: str | Path) -> np.ndarray:
    """Decode a label mask (pixel values = class ids) to (H, W) int64.

    Raises:
        SourceError: unreadable file, or an RGB mask whose channels differ (not a class-id map).
    """
    arr = read_image(path)
    if arr.ndim == 3:
        if not (np.array_equal(arr[..., 0], arr[..., 1]) and np.array_equal(arr[..., 0], arr[..., 2])):
            raise SourceError("rgb-mask", "mask has differing RGB channels; save class ids as a grayscale PNG")
        arr = arr[..., 0]
    return arr.astype(np.int64)


def resize_image(img: np.ndarray, size: int) -> torch.Tensor:
    """(H, W) float image → (1, size, size) tensor (bilinear with antialiasing)."""
    t = torch.from_numpy(np.ascontiguousarray(img, dtype=np.float32))[None, None]  # (1, 1, H, W)
    if t.shape[-2:] != (size, size):
        t = F.interpolate(t, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return t[0].clamp_(0.0, 1.0)


def resize_mask(mask: np.ndarray, size: int) -> torch.Tensor:
    """(H, W) int mask → (size, size) long tensor (nearest neighbour)."""
    t = torch.from_numpy(np.ascontiguousarray(mask)).float()[None, None]  # (1, 1, H, W)
    if t.shape[-2:] != (size, size):
        t = F.interpolate(t, size=(size, size), mode="nearest-exact")
    return t[0, 0].round().long()


def count_frames(path: str | Path) -> int:
    """Number of frames of a video file (container count, else a full decode) or of a frame folder.

    Raises:
        SourceError: not a decodable video.
    """
    path = Path(path)
    if path.is_dir():
        return len(frame_files(path))
    import av

    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise SourceError("not-a-video", "no video stream")
            stream = container.streams.video[0]
            if stream.frames:
                return int(stream.frames)
            return sum(1 for _ in container.decode(stream))
    except SourceError:
        raise
    except Exception as err:  # noqa: BLE001 - PyAV raises many FFmpeg error types
        raise SourceError("not-a-video", f"{type(err).__name__}: {err}") from None


def load_frames(path: str | Path, indices: list[int]) -> list[np.ndarray]:
    """Frames ``indices`` (sorted or not, repeats allowed) of a video file or frame folder as (H, W) [0, 1].

    Raises:
        SourceError: undecodable video, or an index beyond the last frame.
    """
    path = Path(path)
    wanted = sorted(set(indices))
    got: dict[int, np.ndarray] = {}
    if path.is_dir():
        files = frame_files(path)
        for i in wanted:
            if i >= len(files):
                raise SourceError("short-video", f"frame {i} requested, folder has {len(files)}")
            got[i] = load_gray(files[i])
    elif is_video_file(path):
        import av

        try:
            with av.open(str(path)) as container:
                stream = container.streams.video[0]
                for i, frame in enumerate(container.decode(stream)):
                    if i in wanted:
                        got[i] = frame.to_ndarray(format="gray").astype(np.float32) / 255.0
                    if i >= wanted[-1]:
                        break
        except Exception as err:  # noqa: BLE001
            raise SourceError("decode-error", f"{type(err).__name__}: {err}") from None
        missing = [i for i in wanted if i not in got]
        if missing:
            raise SourceError("short-video", f"frames {missing[:5]} not decodable ({len(got)} decoded)")
    else:
        raise SourceError("not-a-video", f"{path} is neither a video file nor a frame folder")
    return [got[i] for i in indices]
