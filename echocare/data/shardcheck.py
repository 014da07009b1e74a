"""Per-sample and per-shard checks of the pretraining stream: skip counting, decoding, metadata parsing,
and reading a shard against its ``index.json`` entry so that damage is never a silently shorter shard.

Skip reasons counted here: ``incomplete_sample``/``bad_json``/``bad_label`` are counted by the stream;
``bad_image`` (any decode failure), ``decompression-bomb`` (PIL's pixel limit), ``truncated-shard`` (one per
sample the index says a damaged shard lost), ``tar_error`` (damage in a shard the index does not describe:
the loss is unknown, counted once) and ``checksum-mismatch`` (``verify``: every sample of the shard).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
from collections import Counter
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import torch
from PIL import Image
from webdataset.gopen import gopen

from echocare.data.codecs import decode_raw_zstd, is_zstd
from echocare.data.tarstream import iter_tar_samples

logger = logging.getLogger(__name__)

__all__ = ["SkipCounter", "decode_gray", "parse_meta", "read_checked_shard"]

_WARN_PER_REASON = 3


class SkipCounter:
    """Counts skipped inputs by reason; logs the first few of each reason at WARNING."""

    def __init__(self, where: str = "") -> None:
        self.where = where
        self.pending: Counter[str] = Counter()
        self.pending_shards: Counter[str] = Counter()
        self.logged: Counter[str] = Counter()

    def add(self, reason: str, key: str, detail: Any, n: int = 1, shard: str | None = None,
            log: bool = True) -> None:
        """Record ``n`` skipped samples (``shard``: also count them against that shard's name)."""
        self.pending[reason] += n
        if shard is not None:
            self.pending_shards[shard] += n
        if not log:
            return
        self.logged[reason] += 1
        level = logging.WARNING if self.logged[reason] <= _WARN_PER_REASON else logging.DEBUG
        logger.log(level, "skipped %s (%s)%s: %s", key, reason, self.where, str(detail)[:300])

    def take(self) -> dict[str, int]:
        """Counts since the previous call (and reset)."""
        out = dict(self.pending)
        self.pending.clear()
        return out

    def take_shards(self) -> dict[str, int]:
        """Samples lost per damaged shard since the previous call (and reset)."""
        out = dict(self.pending_shards)
        self.pending_shards.clear()
        return out


def _sha256_of(url: str) -> str:
    """Hex sha256 of a shard's bytes (any ``gopen`` URL)."""
    h = hashlib.sha256()
    stream = gopen(url, "rb")
    try:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            h.update(chunk)
    finally:
        stream.close()
    return h.hexdigest()


def decode_gray(data: bytes, size_hint: int = 0) -> torch.Tensor:
    """Decode PNG/JPEG/``raw-zstd`` bytes to a uint8 (H, W) tensor, never RGB (colour input is converted with
    PIL's ITU-R 601 luma). JPEGs use ``draft`` so large ones are downscaled in the DCT domain; ``raw-zstd``
    (zstd magic) is :func:`echocare.data.codecs.decode_raw_zstd`.

    Raises:
        ValueError/OSError: undecodable bytes or a non-8-bit image (e.g. 16-bit PNG).
    """
    if is_zstd(data):
        return torch.from_numpy(decode_raw_zstd(data))
    with Image.open(io.BytesIO(data)) as im:
        if im.format == "JPEG" and size_hint:
            im.draft("L", (size_hint, size_hint))  # keeps both sides >= hint
        if im.mode not in ("L", "1", "P", "RGB", "RGBA", "LA", "YCbCr", "CMYK"):
            raise ValueError(f"unsupported image mode {im.mode!r} (shards hold 8-bit grayscale)")
        if im.mode != "L":
            im = im.convert("L")
        arr = np.array(im)  # forces the decode; truncated data raises here
    return torch.from_numpy(arr)


def parse_meta(data: bytes) -> dict[str, Any]:
    """Parse and check a sample's JSON. Raises ValueError naming what is wrong."""
    doc = json.loads(data)
    if not isinstance(doc, dict):
        raise ValueError(f"metadata is a {type(doc).__name__}, not an object")
    if not isinstance(doc.get("dataset"), str):
        raise ValueError("metadata lacks a string 'dataset'")
    paths = doc.get("paths") or []
    space = doc.get("label_space")
    if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
        raise ValueError(f"'paths' must be a list of strings, got {paths!r}")
    if space is not None and (not isinstance(space, list) or not all(isinstance(p, str) for p in space)):
        raise ValueError(f"'label_space' must be null or a list of strings, got {space!r}")
    doc["paths"] = paths
    return doc


def read_checked_shard(url: str, entry: Mapping[str, Any] | None, counter: SkipCounter, verify: bool = False,
                       warned: set[str] | None = None) -> Iterator[dict[str, Any]]:
    """Samples of one shard (``{"__key__", "__url__", ext: bytes}``), checked against its ``index.json``
    ``entry`` (``count``, ``sha256``; None when there is no index).

    A damaged archive (truncated, cut at a member boundary, zeroed header, bad checksum field) keeps
    every sample before the damage; the samples the index says are missing are counted under
    ``truncated-shard`` (per shard, warned once per shard and process). Without an index entry the
    loss is unknown and the damage counts once under ``tar_error``. With ``verify``, a shard whose
    sha256 differs from the index is skipped whole under ``checksum-mismatch``.
    """
    warned = set() if warned is None else warned
    name = os.path.basename(url.split("::")[0].rstrip("/"))
    if verify and entry is not None:
        actual = _sha256_of(url)
        if actual != entry.get("sha256"):
            count = int(entry["count"])
            counter.add("checksum-mismatch", name, "", n=count, shard=name, log=False)
            _warn_shard(warned, name, f"sha256 {actual[:12]}... differs from index.json "
                                      f"{str(entry.get('sha256'))[:12]}...: skipped whole ({count} samples)")
            return
    read, error = 0, None
    try:
        for sample in iter_tar_samples(url):
            read += 1
            yield sample
    except (OSError, ValueError, EOFError) as exc:
        error = exc
    expected = None if entry is None else int(entry["count"])
    if expected is not None and read < expected:
        lost = expected - read
        counter.add("truncated-shard", name, "", n=lost, shard=name, log=False)
        why = f" ({error})" if error is not None else " (the archive ended early)"
        _warn_shard(warned, name, f"damaged: {lost} of {expected} samples lost{why}; {read} read before the damage")
    elif error is not None:
        counter.add("tar_error", url, repr(error))
        if expected is not None:  # as many samples as the index says, then damage: nothing lost
            _warn_shard(warned, name, f"damaged after its {read} indexed samples ({error})")
    elif expected is not None and read > expected:
        _warn_shard(warned, name, f"holds {read} samples but index.json says {expected}: is the index stale?")


def _warn_shard(warned: set[str], name: str, message: str) -> None:
    """Warn about shard ``name`` once per ``warned`` set (one per stream and process)."""
    if name not in warned:
        warned.add(name)
        logger.warning("shard %s %s", name, message)
