"""Per-layout item readers: one scanned :class:`Record` -> a model-ready dict (tensors at model size).

A reader is ``reader(record, ctx) -> dict`` with ``ctx`` a :class:`ReadContext` (model input side ``S``,
frames per temporal item). Fine-tuning tasks name their reader in the task registry
(:mod:`echocare.tasks.registry`); :class:`~echocare.data.labeled.dataset.LabeledDataset` calls it.

================= ==========================================================================================
reader            item (coordinates in model-input pixels)
================= ==========================================================================================
read_class        ``image`` (1, S, S), ``label`` long
read_mask         ``image`` (1, S, S), ``mask`` (S, S) long
read_boxes        ``image``, ``boxes`` (n, 4) x1 y1 x2 y2, ``labels`` (n,) long, ``scale`` (2,) = original/S
read_points       ``image``, ``points`` (L, 2) x y (pixel centres at integers), ``visible`` (L,), ``scale``
read_values       ``image`` (1, S, S) or (T, 1, S, S) for videos, ``value`` (K,)
read_clip         ``image`` (T, 1, S, S) clip of adjacent frames, ``label`` long
================= ==========================================================================================
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from echocare.data.labeled.media import load_frames, load_gray, load_mask, resize_image, resize_mask
from echocare.data.labeled.records import Record
from echocare.data.sources import SourceError

__all__ = ["ReadContext", "Reader", "read_boxes", "read_class", "read_clip", "read_mask", "read_points",
           "read_values"]


@dataclass(frozen=True)
class ReadContext:
    """What a reader needs besides the record.

    Attributes:
        size: Model input side S.
        clip_len: Frames per temporal item.
        seed: The dataset's augmentation seed.
        epoch: The current epoch (readers that draw, e.g. an unpaired partner, use seed/epoch/item).
        augment: Training augmentation is on (for readers that augment several images together).
        hflip: Horizontal flip probability the config asked for.
    """

    size: int
    clip_len: int = 8
    seed: int = 0
    epoch: int = 0
    augment: bool = False
    hflip: float = 0.0


Reader = Callable[[Record, ReadContext], dict[str, Any]]


def _image(r: Record, ctx: ReadContext) -> tuple[torch.Tensor, int, int]:
    """The (1, S, S) image and the original width and height."""
    img = load_gray(r.file)  # (H, W) in [0, 1]
    return resize_image(img, ctx.size), img.shape[1], img.shape[0]


def _frames(r: Record, ctx: ReadContext) -> torch.Tensor:
    n = int(r.extra["num_frames"])
    if "start" in r.extra:  # a clip of adjacent frames
        idx = list(range(r.extra["start"], r.extra["start"] + ctx.clip_len))
    else:  # a whole video: frames spread uniformly over it
        idx = np.linspace(0, n - 1, ctx.clip_len).round().astype(int).tolist()
    frames = load_frames(r.file, idx)
    return torch.stack([resize_image(f, ctx.size) for f in frames])  # (T, 1, S, S)


def read_class(r: Record, ctx: ReadContext) -> dict[str, Any]:
    """An image and its class index."""
    return {"image": _image(r, ctx)[0], "label": torch.tensor(int(r.target), dtype=torch.long)}


def read_clip(r: Record, ctx: ReadContext) -> dict[str, Any]:
    """A clip of ``clip_len`` adjacent frames and its video's class index."""
    return {"image": _frames(r, ctx), "label": torch.tensor(int(r.target), dtype=torch.long)}


def read_mask(r: Record, ctx: ReadContext) -> dict[str, Any]:
    """An image and its class-id mask (resized nearest)."""
    image, w, h = _image(r, ctx)
    mask = load_mask(r.root + "/" + r.target)
    if mask.shape != (h, w):
        raise SourceError("mask-size", f"mask {mask.shape} differs from image {(h, w)}")
    return {"image": image, "mask": resize_mask(mask, ctx.size)}


def read_boxes(r: Record, ctx: ReadContext) -> dict[str, Any]:
    """An image, its boxes in model pixels, their labels and the original/model scale."""
    image, w, h = _image(r, ctx)
    sx, sy = w / ctx.size, h / ctx.size  # original pixels per model pixel
    boxes = torch.tensor(r.target["boxes"], dtype=torch.float32).reshape(-1, 4)  # (n, 4) original pixels
    boxes[:, 0::2] /= sx
    boxes[:, 1::2] /= sy
    return {"image": image, "boxes": boxes.clamp_(0, ctx.size),
            "labels": torch.tensor(r.target["labels"], dtype=torch.long),
            "scale": torch.tensor([sx, sy], dtype=torch.float32)}


def read_points(r: Record, ctx: ReadContext) -> dict[str, Any]:
    """An image, its landmarks in model pixels (hidden ones at 0 with ``visible`` 0) and the scale."""
    image, w, h = _image(r, ctx)
    sx, sy = w / ctx.size, h / ctx.size  # original pixels per model pixel
    pts = torch.tensor(r.target, dtype=torch.float32).reshape(-1, 2)  # (L, 2) original pixel-index coords
    visible = torch.isfinite(pts).all(dim=1)
    pts = torch.nan_to_num(pts, nan=0.0)
    pts[:, 0] = (pts[:, 0] + 0.5) / sx - 0.5
    pts[:, 1] = (pts[:, 1] + 0.5) / sy - 0.5
    return {"image": image, "points": pts, "visible": visible.float(),
            "scale": torch.tensor([sx, sy], dtype=torch.float32)}


def read_values(r: Record, ctx: ReadContext) -> dict[str, Any]:
    """An image (or ``clip_len`` frames spread over a video) and its regressed values."""
    image = _frames(r, ctx) if "num_frames" in r.extra else _image(r, ctx)[0]
    return {"image": image, "value": torch.tensor(r.target, dtype=torch.float32)}
