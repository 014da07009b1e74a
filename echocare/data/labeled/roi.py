"""Region-of-interest stage for videos: one fixed scan-area crop per clip (WAUVE-style ROI, simplified).

WAUVE (seed 004) crops every frame to a lesion box found by a Faster R-CNN before the clip model.
echocare has no lesion detector trained for that, so this stage crops to the *scan area* instead:
the curation crop of :func:`echocare.data.curation.crop_scan_area` (largest bright connected region,
UI text and rulers left out) computed once on the clip's maximum-intensity projection — the union
of the frames' fans — and applied to every frame, so the crop does not jitter from frame to frame.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from echocare.data.curation import crop_scan_area
from echocare.data.labeled.media import load_frames, resize_image
from echocare.data.labeled.readers import ReadContext
from echocare.data.labeled.records import Record

logger = logging.getLogger(__name__)

__all__ = ["clip_scan_area_box", "crop_clip_to_scan_area", "read_clip_roi"]


def _stack(frames: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
    arr = np.stack([np.asarray(f) for f in frames]) if not isinstance(frames, np.ndarray) else frames
    if arr.ndim != 3 or arr.shape[0] == 0:
        raise ValueError(f"frames should be (T, H, W) with T >= 1, got shape {arr.shape}")
    return arr


def clip_scan_area_box(frames: Sequence[np.ndarray] | np.ndarray, threshold: int = 8,
                       min_area_frac: float = 0.05) -> tuple[int, int, int, int]:
    """Scan-area box ``(top, left, bottom, right)`` (exclusive) of a clip.

    Args:
        frames: (T, H, W) grayscale frames, float in [0, 1] or uint8.
        threshold: gray level (0-255) above which a pixel is signal (see ``crop_scan_area``).
        min_area_frac: below this area fraction no scan area is trusted and the full frame is kept.

    Returns:
        The box; the full frame when no reliable scan area is found.
    """
    arr = _stack(frames)
    peak = arr.max(axis=0)  # (H, W) maximum-intensity projection
    if peak.dtype != np.uint8:
        peak = np.clip(np.rint(peak.astype(np.float64) * 255.0), 0, 255).astype(np.uint8)
    _, box = crop_scan_area(peak, threshold=threshold, min_area_frac=min_area_frac)
    return box


def crop_clip_to_scan_area(frames: Sequence[np.ndarray] | np.ndarray, threshold: int = 8,
                           min_area_frac: float = 0.05) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """Crop every frame of a clip to the clip's scan-area box.

    Returns:
        ``(cropped (T, h, w), box)``; resize to the model size afterwards as usual.
    """
    arr = _stack(frames)
    top, left, bottom, right = clip_scan_area_box(arr, threshold, min_area_frac)
    if (bottom - top, right - left) == arr.shape[1:]:
        logger.debug("no scan area found in a %s clip; frames kept whole", arr.shape)
    return arr[:, top:bottom, left:right], (top, left, bottom, right)


def read_clip_roi(r: Record, ctx: ReadContext) -> dict[str, Any]:
    """:func:`~echocare.data.labeled.readers.read_clip` with the ROI stage: the clip's ``clip_len``
    adjacent frames cropped to their scan-area box, then resized: ``image`` (T, 1, S, S), ``label``."""
    start = int(r.extra.get("start", 0))
    frames = load_frames(r.file, list(range(start, start + ctx.clip_len)))  # T x (H, W) in [0, 1]
    cropped, _ = crop_clip_to_scan_area(np.stack(frames))  # (T, h, w)
    clip = torch.stack([resize_image(f, ctx.size) for f in cropped])  # (T, 1, S, S)
    return {"image": clip, "label": torch.tensor(int(r.target), dtype=torch.long)}
