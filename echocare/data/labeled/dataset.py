"""Torch dataset over scanned labeled records: read each item with the task's reader, light augmentation.

What an item holds is decided by the reader it is given (see :mod:`echocare.data.labeled.readers`);
every item also has ``index`` (position in the dataset). Augmentation (training only) is an optional random
rotation / zoom / shift where the task says it is label-safe (image and mask together:
:mod:`echocare.data.labeled.geometry`), a horizontal flip where label-safe (not for landmarks, whose left/right
identities would swap) and a weak brightness/contrast jitter; all randomness comes from ``seed``, the epoch and
the index, so an epoch is reproducible whatever the number of workers.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from echocare.data.labeled.geometry import affine_theta, apply_affine
from echocare.data.labeled.readers import ReadContext, Reader
from echocare.data.labeled.records import Record
from echocare.data.sources import SourceError

logger = logging.getLogger(__name__)

__all__ = ["LabeledDataset", "collate_labeled"]


class LabeledDataset(Dataset):
    """Model-ready items of one task.

    Args:
        records: Items from :func:`echocare.data.labeled.scan_dataset`.
        reader: ``reader(record, ctx) -> dict`` (see :mod:`echocare.data.labeled.readers`).
        img_size: Model input side S.
        augment: Apply training augmentation.
        hflip: Flip probability (ignored unless ``hflip_safe``).
        intensity: Max relative brightness/contrast change (0 disables).
        clip_len: Frames per temporal item.
        seed: Augmentation seed.
        hflip_safe: Whether a horizontal flip keeps the labels valid.
        name: Task name (for messages).
        rotate: Maximum random rotation in degrees (0 = none).
        scale: Random zoom range ``(lo, hi)`` (``(1, 1)`` = none).
        translate: Maximum random shift, fraction of the side (0 = none).
        affine_safe: Whether rotation / zoom / shift keep the labels valid (image-level labels, or a mask
            that is transformed with the image).
    """

    def __init__(self, records: list[Record], reader: Reader, img_size: int, augment: bool = False,
                 hflip: float = 0.5, intensity: float = 0.1, clip_len: int = 8, seed: int = 0,
                 hflip_safe: bool = True, name: str = "", rotate: float = 0.0,
                 scale: tuple[float, float] = (1.0, 1.0), translate: float = 0.0, affine_safe: bool = False) -> None:
        self.records = list(records)
        self.reader = reader
        self.name = name
        self.ctx = ReadContext(int(img_size), int(clip_len), seed=seed, augment=augment, hflip=hflip)
        self.size = int(img_size)
        self.augment = augment
        self.hflip = hflip if hflip_safe else 0.0
        if augment and hflip > 0 and not hflip_safe:
            logger.info("%s: horizontal flips are not label-safe and are disabled", name or "this task")
        self.affine = (float(rotate), (float(scale[0]), float(scale[1])), float(translate))
        wants_affine = rotate > 0 or tuple(scale) != (1.0, 1.0) or translate > 0
        if augment and wants_affine and not affine_safe:
            logger.info("%s: rotation / zoom / shift are not label-safe and are disabled", name or "this task")
        self.use_affine = bool(augment and wants_affine and affine_safe)
        self.intensity = intensity
        self.clip_len = clip_len
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.records)

    def set_epoch(self, epoch: int) -> None:
        """Change the augmentation stream (called by the loader at each epoch)."""
        self.epoch = int(epoch)
        self.ctx = dataclasses.replace(self.ctx, epoch=self.epoch)

    #: ``dataset[(epoch, i)]`` is item ``i`` as in ``epoch`` (what a loader whose workers outlive an epoch sends:
    #: their copies of the dataset never see :meth:`set_epoch`)
    epoch_in_index = True

    def __getitem__(self, index: int | tuple[int, int]) -> dict[str, Any]:
        epoch = self.epoch
        if isinstance(index, tuple):
            epoch, index = int(index[0]), int(index[1])
        r = self.records[index]
        rng = np.random.default_rng([self.seed, epoch, index])
        ctx = self.ctx if epoch == self.ctx.epoch else dataclasses.replace(self.ctx, epoch=epoch)
        try:
            item = self.reader(r, ctx)
        except SourceError as err:
            raise SourceError(err.reason, f"{r.file}: {err.detail}") from None
        item["index"] = index
        if self.augment:
            self._augment(item, rng)
        return item

    # ------------------------------------------------------------------ augmentation
    def _augment(self, item: dict[str, Any], rng: np.random.Generator) -> None:
        s = self.size
        if self.use_affine:
            theta = affine_theta(rng, *self.affine)
            item["image"], mask = apply_affine(theta, item["image"], item.get("mask"))
            if mask is not None:
                item["mask"] = mask
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
