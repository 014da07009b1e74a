"""Torch dataset over scanned labeled records: decode, resize to the model size, light augmentation.

Items (``S`` = ``img_size``; coordinates in model-input pixels):

=============== ==========================================================================================
classification  ``image`` (1, S, S), ``label`` long
segmentation    ``image`` (1, S, S), ``mask`` (S, S) long
detection       ``image``, ``boxes`` (n, 4) x1 y1 x2 y2, ``labels`` (n,) long, ``scale`` (2,) = original/S
landmarks       ``image``, ``points`` (L, 2) x y (pixel centres at integers), ``visible`` (L,), ``scale``
regression      ``image`` (1, S, S) or (T, 1, S, S), ``value`` (K,)
video           ``image`` (T, 1, S, S) clip of adjacent frames, ``label`` long
=============== ==========================================================================================

Every item also has ``index`` (position in the dataset). Augmentation (training only) is a
horizontal flip where it is label-safe (not for landmarks, whose left/right identities would swap)
and a weak brightness/contrast jitter; all randomness comes from ``seed``, the epoch and the index,
so an epoch is reproducible whatever the number of workers.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from echocare.data.labeled.media import load_frames, load_gray, load_mask, resize_image, resize_mask
from echocare.data.labeled.records import Record
from echocare.data.sources import SourceError

logger = logging.getLogger(__name__)

__all__ = ["LabeledDataset", "collate_labeled"]

_FLIP_SAFE = {"classification", "segmentation", "detection", "regression", "video"}


class LabeledDataset(Dataset):
    """Model-ready items for one task.

    Args:
        records: Items from :func:`echocare.data.labeled.scan_dataset`.
        task: Task name.
        img_size: Model input side S.
        augment: Apply training augmentation.
        hflip: Flip probability (ignored where not label-safe).
        intensity: Max relative brightness/contrast change (0 disables).
        clip_len: Frames per temporal item.
        seed: Augmentation seed.
    """

    def __init__(self, records: list[Record], task: str, img_size: int, augment: bool = False, hflip: float = 0.5,
                 intensity: float = 0.1, clip_len: int = 8, seed: int = 0) -> None:
        self.records = list(records)
        self.task = task
        self.size = int(img_size)
        self.augment = augment
        self.hflip = hflip if task in _FLIP_SAFE else 0.0
        if augment and hflip > 0 and task not in _FLIP_SAFE:
            logger.info("%s: horizontal flips are not label-safe and are disabled", task)
        self.intensity = intensity
        self.clip_len = clip_len
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.records)

    def set_epoch(self, epoch: int) -> None:
        """Change the augmentation stream (called by the loader at each epoch)."""
        self.epoch = int(epoch)

    def _rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.epoch, index])

    # ------------------------------------------------------------------ loading
    def _image(self, r: Record) -> tuple[torch.Tensor, tuple[int, int]]:
        img = load_gray(r.file)  # (H, W) in [0, 1]
        return resize_image(img, self.size), (img.shape[1], img.shape[0])

    def _frames(self, r: Record) -> torch.Tensor:
        n = int(r.extra["num_frames"])
        if "start" in r.extra:  # video classification: adjacent frames of one clip
            idx = list(range(r.extra["start"], r.extra["start"] + self.clip_len))
        else:  # whole-video regression: frames spread uniformly over the video
            idx = np.linspace(0, n - 1, self.clip_len).round().astype(int).tolist()
        frames = load_frames(r.file, idx)
        return torch.stack([resize_image(f, self.size) for f in frames])  # (T, 1, S, S)

    def __getitem__(self, index: int) -> dict[str, Any]:
        r = self.records[index]
        rng = self._rng(index)
        try:
            item = self._load(r)
        except SourceError as err:
            raise SourceError(err.reason, f"{r.file}: {err.detail}") from None
        item["index"] = index
        if self.augment:
            self._augment(item, rng)
        return item

    def _load(self, r: Record) -> dict[str, Any]:
        s = self.size
        if self.task in ("video",) or (self.task == "regression" and "num_frames" in r.extra):
            item: dict[str, Any] = {"image": self._frames(r)}
            if self.task == "video":
                item["label"] = torch.tensor(int(r.target), dtype=torch.long)
            else:
                item["value"] = torch.tensor(r.target, dtype=torch.float32)
            return item
        image, (w, h) = self._image(r)
        item = {"image": image}
        sx, sy = w / s, h / s  # original pixels per model pixel
        if self.task == "classification":
            item["label"] = torch.tensor(int(r.target), dtype=torch.long)
        elif self.task == "segmentation":
            mask = load_mask(r.root + "/" + r.target)
            if mask.shape != (h, w):
                raise SourceError("mask-size", f"mask {mask.shape} differs from image {(h, w)}")
            item["mask"] = resize_mask(mask, s)
        elif self.task == "detection":
            boxes = torch.tensor(r.target["boxes"], dtype=torch.float32).reshape(-1, 4)
            boxes[:, 0::2] /= sx
            boxes[:, 1::2] /= sy
            item.update(boxes=boxes.clamp_(0, s), labels=torch.tensor(r.target["labels"], dtype=torch.long),
                        scale=torch.tensor([sx, sy], dtype=torch.float32))
        elif self.task == "landmarks":
            pts = torch.tensor(r.target, dtype=torch.float32).reshape(-1, 2)  # original pixel-index coords
            visible = torch.isfinite(pts).all(dim=1)
            pts = torch.nan_to_num(pts, nan=0.0)
            pts[:, 0] = (pts[:, 0] + 0.5) / sx - 0.5
            pts[:, 1] = (pts[:, 1] + 0.5) / sy - 0.5
            item.update(points=pts, visible=visible.float(), scale=torch.tensor([sx, sy], dtype=torch.float32))
        elif self.task == "regression":
            item["value"] = torch.tensor(r.target, dtype=torch.float32)
        else:
            raise ValueError(f"unknown task {self.task!r}")
        return item

    # ------------------------------------------------------------------ augmentation
    def _augment(self, item: dict[str, Any], rng: np.random.Generator) -> None:
        s = self.size
        if self.hflip > 0 and rng.random() < self.hflip:
            item["image"] = item["image"].flip(-1)
            if "mask" in item:
                item["mask"] = item["mask"].flip(-1)
            if "boxes" in item and item["boxes"].numel():
                b = item["boxes"]
                item["boxes"] = torch.stack([s - b[:, 2], b[:, 1], s - b[:, 0], b[:, 3]], dim=1)
        if self.intensity > 0:
            gain = 1.0 + rng.uniform(-self.intensity, self.intensity)
            bias = rng.uniform(-self.intensity, self.intensity) / 2
            item["image"] = (item["image"] * gain + bias).clamp_(0.0, 1.0)


def collate_labeled(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack tensors of equal shape; variable-size entries (detection ``boxes``/``labels``) stay lists."""
    out: dict[str, Any] = {}
    for key in items[0]:
        values = [it[key] for it in items]
        if key in ("boxes", "labels") and "boxes" in items[0]:
            out[key] = values
        elif isinstance(values[0], torch.Tensor):
            out[key] = torch.stack(values)
        elif isinstance(values[0], (int, float)) and not isinstance(values[0], bool):
            out[key] = torch.tensor(values)
        else:
            out[key] = values
    return out


def steps_per_epoch(n_items: int, batch_size: int, world_size: int = 1) -> int:
    """Optimizer-free count of full batches per process per epoch (at least 1)."""
    return max(1, math.floor(n_items / max(1, batch_size * world_size)))
