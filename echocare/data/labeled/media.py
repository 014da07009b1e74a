"""Decode images, masks and videos of labeled datasets into model-ready tensors.

House decision: images become grayscale float in [0, 1] (8-bit / 255, 16-bit / 65535, RGB by
ITU-R 601 luma) and are resized to the model size; **no mean/std normalisation** anywhere.
Masks are resized with nearest-neighbour so class ids stay exact. Binary masks stored 0/255 (the usual
export format) are read as class ids 0/1; :func:`check_mask_values` reports that once per dataset and
turns any other out-of-range value into one error that lists the values.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from echocare.data.labeled.records import frame_files, is_video_file
from echocare.data.sources import SourceError, read_image
from echocare.errors import DataError

__all__ = ["check_mask_values", "count_frames", "is_binary_255", "load_frames", "load_gray", "load_mask",
           "resize_image", "resize_mask", "to_unit_gray"]

logger = logging.getLogger(__name__)

#: With ``num_classes`` unset, a mask value set this sparse (max id >= this and fewer than half the ids
#: 0..max present) looks like gray levels rather than class ids and is an error.
SPARSE_MASK_MIN = 16


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


def is_binary_255(values: np.ndarray | set[int]) -> bool:
    """Whether a mask's distinct values are a binary mask stored 0/255 (``{255}`` or ``{0, 255}``)."""
    vals = {int(v) for v in values}
    return 255 in vals and vals <= {0, 255}


def load_mask(path: str | Path, map_binary: bool = True) -> np.ndarray:
    """Decode a label mask (pixel values = class ids) to (H, W) int64.

    Args:
        path: Mask image (grayscale PNG, or RGB with equal channels).
        map_binary: Read a 0/255 binary mask as class ids 0/1.

    Raises:
        SourceError: unreadable file, or an RGB mask whose channels differ (not a class-id map).
    """
    arr = read_image(path)
    if arr.ndim == 3:
        if not (np.array_equal(arr[..., 0], arr[..., 1]) and np.array_equal(arr[..., 0], arr[..., 2])):
            raise SourceError("rgb-mask", "mask has differing RGB channels; save class ids as a grayscale PNG")
        arr = arr[..., 0]
    arr = arr.astype(np.int64)
    if map_binary and is_binary_255(np.unique(arr)):
        arr = (arr == 255).astype(np.int64)
    return arr


def check_mask_values(values: Mapping[str, set[int]], num_classes: int | None) -> int:
    """Check the distinct values of every mask of a dataset; return the number of classes.

    Binary 0/255 masks count as {0, 1} (logged once for the dataset).

    Args:
        values: Mask name → its distinct raw values (as read with ``map_binary=False``).
        num_classes: ``data.num_classes``; None infers ``max id + 1`` (at least 2).

    Raises:
        ValueError: one line listing the values outside ``0..num_classes-1`` (or, inferred, a sparse set
            that looks like gray levels) and up to three masks holding them.
    """
    binary = [name for name, v in values.items() if is_binary_255(v)]
    if binary:
        logger.info("%d of %d masks are binary masks stored 0/255: 255 is read as class 1 (e.g. %s)",
                    len(binary), len(values), binary[0])
    ids = {name: ({0 if x == 0 else 1 for x in v} if is_binary_255(v) else set(v)) for name, v in values.items()}
    seen = set().union(*ids.values()) if ids else set()
    if num_classes is not None:
        bad = sorted(v for v in seen if v < 0 or v >= num_classes)
        why = f"outside 0..{num_classes - 1} (data.num_classes={num_classes})"
    else:
        top = max(seen, default=0)
        bad = sorted(v for v in seen if v < 0)
        if not bad and top >= SPARSE_MASK_MIN and len(seen) < (top + 1) / 2:
            bad = sorted(seen)
        why = "that are not class ids 0..K-1 (negative, or sparse like gray levels; set data.num_classes)"
    if bad:
        where = [name for name, v in ids.items() if any(x in v for x in bad)]
        shown = ", ".join(map(str, bad[:20])) + (f", ... ({len(bad)} values)" if len(bad) > 20 else "")
        raise DataError(f"masks hold values {shown} {why}: {len(where)} mask(s), e.g. {', '.join(where[:3])}; "
                         "masks must store class ids (binary masks may be stored 0/1 or 0/255)")
    return num_classes if num_classes is not None else max(2, max(seen, default=0) + 1)


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
