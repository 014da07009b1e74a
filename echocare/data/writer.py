"""Deterministic, size-limited webdataset tar shards and their ``index.json``.

A shard is a plain POSIX tar (GNU format) whose members come in pairs
``<key>.png`` (or ``.jpg``, ``.npy.zst``) + ``<key>.json``. Every member gets ``mtime=0``,
``uid=gid=0``, empty user/group names and mode ``0644``, so the same samples
always give the same bytes. Shards are written to ``<name>.tmp`` and renamed
atomically once complete; their sha256 is computed while writing.

Both ``tarfile`` and ``webdataset`` read the result (keys contain no dots, so
webdataset splits ``<key>.<ext>`` correctly).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
import tarfile
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from echocare.data.codecs import RAW_ZSTD_EXT, encode_raw_zstd

logger = logging.getLogger(__name__)

SHARD_PATTERN = "shard-{:06d}.tar"
SHARD_RE = re.compile(r"^shard-(\d{6})\.tar$")
INDEX_VERSION = 1
_BLOCK = tarfile.BLOCKSIZE  # 512


@dataclass
class Sample:
    """One shard sample: an encoded image and its JSON metadata."""

    key: str
    image: bytes
    ext: str  # "png" | "jpg" | "npy.zst"
    meta: dict[str, Any]

    def json_bytes(self) -> bytes:
        """Canonical JSON encoding (sorted keys, compact) of the metadata."""
        return json.dumps(self.meta, sort_keys=True, separators=(",", ":")).encode()


@dataclass
class ShardRecord:
    """What ``index.json`` records about one finished shard."""

    name: str
    count: int
    bytes: int
    sha256: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return asdict(self)


def encode_image(img: np.ndarray, fmt: str = "png", jpeg_quality: int = 95) -> tuple[bytes, str]:
    """Encode a ``(H, W)`` uint8 image as 8-bit grayscale PNG (lossless), JPEG, or ``raw-zstd`` (lossless,
    ``.npy.zst``: a zstd-compressed ``.npy``, see :mod:`echocare.data.codecs`).

    Returns:
        ``(bytes, extension)``; the encoding is deterministic for a given array.
    """
    if img.dtype != np.uint8 or img.ndim != 2:
        raise ValueError(f"encode_image needs a 2-D uint8 array, got {img.dtype} {img.shape}")
    if fmt == "raw-zstd":
        return encode_raw_zstd(img), RAW_ZSTD_EXT
    buf = io.BytesIO()
    pil = Image.fromarray(img)  # 2-D uint8 -> mode "L"
    if fmt == "png":
        pil.save(buf, format="PNG", optimize=False, compress_level=6)
        return buf.getvalue(), "png"
    if fmt == "jpeg":
        pil.save(buf, format="JPEG", quality=int(jpeg_quality), subsampling=0, optimize=False)
        return buf.getvalue(), "jpg"
    raise ValueError(f"unknown image format {fmt!r}; expected 'png', 'jpeg' or 'raw-zstd'")


def member_size(n_bytes: int) -> int:
    """Bytes a tar member of ``n_bytes`` content occupies (header + padded data)."""
    return _BLOCK + (n_bytes + _BLOCK - 1) // _BLOCK * _BLOCK


def sample_size(sample: Sample) -> int:
    """Bytes a sample occupies in a tar (two members)."""
    return member_size(len(sample.image)) + member_size(len(sample.json_bytes()))


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's content."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and an atomic rename."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_json_atomic(path: str | Path, obj: Any) -> None:
    """Write ``obj`` as indented, key-sorted JSON, atomically."""
    write_bytes_atomic(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


class _HashingFile:
    """Write-only file wrapper that hashes and counts what goes through it."""

    def __init__(self, f: io.BufferedWriter) -> None:
        self._f = f
        self.sha = hashlib.sha256()
        self.n = 0

    def write(self, b: bytes) -> int:
        self.sha.update(b)
        self.n += len(b)
        return self._f.write(b)

    def tell(self) -> int:
        return self.n

    def flush(self) -> None:
        self._f.flush()


def _tarinfo(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = 0
    info.mode = 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.type = tarfile.REGTYPE
    return info


class ShardWriter:
    """Write samples into ``out_dir/shard-NNNNNN.tar`` files with size limits.

    A shard is closed before a sample that would push it past ``max_bytes`` or
    ``max_count`` (a single sample larger than ``max_bytes`` gets a shard of its
    own). ``on_close(record)`` is called after each shard is renamed into place;
    the build uses it to record resume progress.

    Args:
        out_dir: output folder (created).
        max_bytes: shard size limit in bytes (tar blocks and end padding included).
        max_count: shard sample limit.
        start_index: number of the first shard written (resume).
        on_close: callback receiving each finished :class:`ShardRecord`.
    """

    def __init__(
        self,
        out_dir: str | Path,
        max_bytes: int = 1 << 30,
        max_count: int = 10_000,
        start_index: int = 0,
        on_close: Callable[[ShardRecord], None] | None = None,
    ) -> None:
        if max_bytes <= 0 or max_count <= 0:
            raise ValueError(f"shard limits must be positive, got max_bytes={max_bytes}, max_count={max_count}")
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.max_bytes = int(max_bytes)
        self.max_count = int(max_count)
        self.index = start_index
        self.on_close = on_close
        self.records: list[ShardRecord] = []
        self._tar: tarfile.TarFile | None = None
        self._raw: io.BufferedWriter | None = None
        self._hash: _HashingFile | None = None
        self._count = 0
        self._bytes = 0
        self._name = ""

    @property
    def is_open(self) -> bool:
        """Whether a shard is currently being written."""
        return self._tar is not None

    def would_close(self, sample: Sample) -> bool:
        """Whether adding ``sample`` will first close the current shard."""
        if self._tar is None or self._count == 0:
            return False
        # 2 end-of-archive blocks, then padding to the 10 KiB record size.
        projected = self._bytes + sample_size(sample) + 2 * _BLOCK
        projected = -(-projected // tarfile.RECORDSIZE) * tarfile.RECORDSIZE
        return self._count >= self.max_count or projected > self.max_bytes

    def write(self, sample: Sample) -> None:
        """Append one sample, opening / closing shards as the limits require."""
        if "." in sample.key:
            raise ValueError(f"sample key {sample.key!r} contains a dot; webdataset would split it")
        if self.would_close(sample):
            self.close_shard()
        if self._tar is None:
            self._open()
        assert self._tar is not None
        data = sample.json_bytes()
        self._tar.addfile(_tarinfo(f"{sample.key}.{sample.ext}", len(sample.image)), io.BytesIO(sample.image))
        self._tar.addfile(_tarinfo(f"{sample.key}.json", len(data)), io.BytesIO(data))
        self._bytes += sample_size(sample)
        self._count += 1

    def _open(self) -> None:
        self._name = SHARD_PATTERN.format(self.index)
        self._raw = open(self.out_dir / (self._name + ".tmp"), "wb")
        self._hash = _HashingFile(self._raw)
        self._tar = tarfile.open(fileobj=self._hash, mode="w", format=tarfile.GNU_FORMAT)
        self._count = 0
        self._bytes = 0

    def close_shard(self) -> ShardRecord | None:
        """Finish the current shard (if any) and return its record."""
        if self._tar is None:
            return None
        assert self._raw is not None and self._hash is not None
        self._tar.close()
        self._raw.flush()
        os.fsync(self._raw.fileno())
        self._raw.close()
        final = self.out_dir / self._name
        os.replace(self.out_dir / (self._name + ".tmp"), final)
        record = ShardRecord(self._name, self._count, self._hash.n, self._hash.sha.hexdigest())
        self.records.append(record)
        logger.info("wrote %s (%d samples, %.1f MB)", self._name, record.count, record.bytes / 1e6)
        self._tar = self._raw = self._hash = None
        self.index += 1
        if self.on_close is not None:
            self.on_close(record)
        return record

    def close(self) -> list[ShardRecord]:
        """Close the last shard; returns the records written by this writer."""
        self.close_shard()
        return self.records


@dataclass
class IndexStats:
    """Histograms accumulated over the written samples."""

    datasets: dict[str, int] = field(default_factory=dict)
    labels: dict[str, int] = field(default_factory=dict)
    unlabeled: int = 0
    total: int = 0

    def add(self, dataset: str, paths: Iterable[str]) -> None:
        """Count one written sample."""
        self.datasets[dataset] = self.datasets.get(dataset, 0) + 1
        paths = list(paths)
        for p in paths:
            self.labels[p] = self.labels.get(p, 0) + 1
        if not paths:
            self.unlabeled += 1
        self.total += 1


def make_index(
    shards: list[ShardRecord],
    stats: IndexStats,
    ontology_hash: str,
    image_size: int,
    image_format: str,
    rejected: dict[str, int],
) -> dict[str, Any]:
    """Assemble the ``index.json`` document (no timestamps: it is deterministic)."""
    return {
        "version": INDEX_VERSION,
        "ontology_hash": ontology_hash,
        "image_size": image_size,
        "format": image_format,
        "shards": [s.to_dict() for s in shards],
        "datasets": dict(sorted(stats.datasets.items())),
        "labels": dict(sorted(stats.labels.items())),
        "unlabeled": stats.unlabeled,
        "total": stats.total,
        "rejected": dict(sorted(rejected.items())),
    }


def readable_name(text: str) -> str:
    """A file name as valid UTF-8 text: bytes that were not UTF-8 (held by Python as lone surrogates,
    ``os.fsdecode``'s surrogateescape) become visible ``\\xNN`` escapes, e.g. ``caf\\xe9.png``."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _readable(value: Any) -> Any:
    if isinstance(value, str):
        return readable_name(value)
    if isinstance(value, dict):
        return {readable_name(str(k)): _readable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_readable(v) for v in value]
    return value


def write_report(path: str | Path, rows: Iterable[dict[str, Any]]) -> int:
    """Write ``build_report.jsonl`` (one rejected input per line; non-UTF-8 file names escaped with
    :func:`readable_name`, so every line is strict UTF-8 JSON); returns the row count."""
    lines = [json.dumps(_readable(r), sort_keys=True, ensure_ascii=False, allow_nan=False) for r in rows]
    write_bytes_atomic(path, ("\n".join(lines) + ("\n" if lines else "")).encode())
    return len(lines)


def list_shard_files(out_dir: str | Path) -> list[Path]:
    """Shard files ``shard-NNNNNN.tar`` in ``out_dir``, sorted by number."""
    out = Path(out_dir)
    if not out.is_dir():
        return []
    return sorted(p for p in out.iterdir() if SHARD_RE.match(p.name))
