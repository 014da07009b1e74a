"""Enhancement data: ``ROOT/low/*`` and ``ROOT/high/*`` images, paired by name where names match.

A low-quality image whose path under ``low/`` (minus the suffix) also exists under ``high/`` is a
*pair*; the other low images and the other high images form the unpaired pools. Training items are
one per low image: its reference when paired, else a high image drawn from the whole high set
(different each epoch, reproducible from seed/epoch/index). Unreadable files and unsupported
suffixes are counted in a :class:`~echocare.data.labeled.records.SkipReport`, never dropped silently.
"""

from __future__ import annotations

import logging
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from echocare.data.labeled.media import load_gray, resize_image
from echocare.data.labeled.readers import ReadContext
from echocare.data.labeled.records import IMAGE_SUFFIXES, Record, SkipReport
from echocare.data.labeled.scan import Scanned, ScanOptions
from echocare.errors import DataError

logger = logging.getLogger(__name__)

__all__ = ["EnhancementDataset", "EnhancementSet", "collate_enhancement", "read_enhancement", "scan_enhancement",
           "scan_enhancement_records"]


@dataclass
class EnhancementSet:
    """A scanned enhancement dataset (paths relative to ``root``, ``/`` separated, sorted).

    Attributes:
        root: Dataset root.
        pairs: ``(low, high)`` paths with the same name.
        low_only: Low images without a reference.
        high_only: High images without a low counterpart.
        skips: Everything left out, with reasons.
    """

    root: Path
    pairs: list[tuple[str, str]]
    low_only: list[str]
    high_only: list[str]
    skips: SkipReport

    @property
    def low(self) -> list[str]:
        """Every usable low image: paired ones first, then unpaired."""
        return [lo for lo, _ in self.pairs] + self.low_only

    @property
    def high(self) -> list[str]:
        """Every usable high image: paired ones first, then unpaired."""
        return [hi for _, hi in self.pairs] + self.high_only


def _images(folder: Path, root: Path, skips: SkipReport, verify: bool) -> dict[str, str]:
    """Stem (path under ``folder`` without suffix) → path relative to ``root``, for readable images."""
    from PIL import Image

    found: dict[str, str] = {}
    for p in sorted(folder.rglob("*")):
        if not p.is_file():
            continue
        rel = p.relative_to(root).as_posix()
        if p.suffix.lower() not in IMAGE_SUFFIXES:
            skips.add(rel, "unsupported-suffix")
            continue
        stem = p.relative_to(folder).with_suffix("").as_posix()
        if stem in found:
            skips.add(rel, "duplicate-name", f"{found[stem]} has the same name")
            continue
        if verify:
            try:
                with Image.open(p) as im:
                    im.verify()
            except Exception as err:  # noqa: BLE001 - PIL raises many types for corrupt files
                skips.add(rel, "corrupt-image", f"{type(err).__name__}: {err}")
                continue
        found[stem] = rel
    return found


def scan_enhancement(root: str | Path, low_dir: str = "low", high_dir: str = "high",
                     verify: bool = True) -> EnhancementSet:
    """Scan ``root/low_dir`` and ``root/high_dir``.

    Raises:
        FileNotFoundError: ``root`` or one of the two folders is missing.
        ValueError: no usable low image, or no usable high image.
    """
    root = Path(root).expanduser()
    low, high = root / low_dir, root / high_dir
    for d in (low, high):
        if not d.is_dir():
            raise FileNotFoundError(f"enhancement data needs {low} and {high} folders; {d} is missing")
    skips = SkipReport()
    lows, highs = _images(low, root, skips, verify), _images(high, root, skips, verify)
    if not lows or not highs:
        raise DataError(f"{root}: enhancement needs low and high images; found {len(lows)} low and "
                         f"{len(highs)} high ({skips.count} skipped: {skips.by_reason()})")
    pairs = [(lows[s], highs[s]) for s in sorted(lows) if s in highs]
    low_only = [lows[s] for s in sorted(lows) if s not in highs]
    high_only = [highs[s] for s in sorted(highs) if s not in lows]
    logger.info("enhancement data %s: %d pairs, %d unpaired low, %d unpaired high, %d skipped %s", root,
                len(pairs), len(low_only), len(high_only), skips.count, skips.by_reason() or "")
    return EnhancementSet(root, pairs, low_only, high_only, skips)


class EnhancementDataset(Dataset):
    """One item per low image: ``low`` (1, S, S), ``high`` (1, S, S), ``paired`` bool, ``index``.

    Args:
        data: a scanned :class:`EnhancementSet`.
        img_size: model input side S.
        augment: random horizontal flip (the same flip for low and its reference).
        seed: randomness of the unpaired high draw and the flips.
    """

    def __init__(self, data: EnhancementSet, img_size: int, augment: bool = False, seed: int = 0) -> None:
        self.data = data
        self.low = data.low
        self.high = data.high
        self.num_pairs = len(data.pairs)
        self.size = int(img_size)
        self.augment = augment
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.low)

    def set_epoch(self, epoch: int) -> None:
        """Change the unpaired draws and flips (called by the loader at each epoch)."""
        self.epoch = int(epoch)

    def _load(self, rel: str) -> torch.Tensor:
        return resize_image(load_gray(self.data.root / rel), self.size)  # (1, S, S)

    def __getitem__(self, index: int) -> dict[str, Any]:
        rng = np.random.default_rng([self.seed, self.epoch, index])
        paired = index < self.num_pairs
        high_rel = self.high[index] if paired else self.high[int(rng.integers(len(self.high)))]
        low, high = self._load(self.low[index]), self._load(high_rel)
        if self.augment and rng.random() < 0.5:
            low = low.flip(-1)
            high = high.flip(-1) if paired else high
        return {"low": low, "high": high, "paired": paired, "index": index, "path": self.low[index]}


def collate_enhancement(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack items: ``low``/``high`` (B, 1, S, S), ``paired`` (B,) bool, ``index`` (B,), ``path`` list."""
    return {
        "low": torch.stack([i["low"] for i in items]),
        "high": torch.stack([i["high"] for i in items]),
        "paired": torch.tensor([i["paired"] for i in items], dtype=torch.bool),
        "index": torch.tensor([i["index"] for i in items], dtype=torch.long),
        "path": [i["path"] for i in items],
    }


def scan_enhancement_records(root: Path, opts: ScanOptions, skips: SkipReport) -> Scanned:
    """:func:`scan_enhancement` as a fine-tuning scanner: one :class:`Record` per low image.

    ``target`` is the same-named high image (paired) or None (unpaired); ``extra["pool"]`` holds the
    high images an unpaired item draws its "real" sample from: the high images without a low
    counterpart, or every high image when all of them are paired (so references of paired validation
    items are not shown to the discriminator when unpaired ones exist).
    """
    found = scan_enhancement(root, verify=opts.verify)
    for item in found.skips.items:
        skips.add(item["source"], item["reason"], item["detail"])
    pool = tuple(found.high_only) if found.high_only else tuple(found.high)
    records = [Record(lo, hi, str(found.root), extra={"pool": pool}) for lo, hi in found.pairs]
    records += [Record(lo, None, str(found.root), extra={"pool": pool}) for lo in found.low_only]
    return Scanned(found.root, records, ["enhanced"], 1, verified=True)


def read_enhancement(r: Record, ctx: ReadContext) -> dict[str, Any]:
    """``image`` (low, (1, S, S)), ``high`` (1, S, S), ``paired`` bool tensor, ``high_path``.

    An unpaired item draws its high image from ``extra["pool"]`` with ``(ctx.seed, ctx.epoch, item)``
    randomness (a new partner every epoch, reproducible); with ``ctx.augment`` the low image and its
    reference are flipped together with probability ``ctx.hflip``.
    """
    rng = np.random.default_rng([ctx.seed, ctx.epoch, zlib.crc32(r.path.encode())])
    paired = r.target is not None
    pool = r.extra.get("pool") or ()
    if not paired and not pool:
        raise ValueError(f"{r.path}: unpaired enhancement item without high-quality images to draw from")
    high_rel = r.target if paired else pool[int(rng.integers(len(pool)))]
    root = Path(r.root)
    low = resize_image(load_gray(root / r.path), ctx.size)  # (1, S, S)
    high = resize_image(load_gray(root / high_rel), ctx.size)
    if ctx.augment and rng.random() < ctx.hflip:
        low, high = low.flip(-1), high.flip(-1)
    return {"image": low, "high": high, "paired": torch.tensor(paired), "high_path": high_rel}
