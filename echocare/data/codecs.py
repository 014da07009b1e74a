"""``raw-zstd``: a lossless sample format that decodes ~4x faster than PNG (a zstd-compressed ``.npy``).

A shard member ``<key>.npy.zst`` is a standard zstd frame (content size in the header) holding a standard
NumPy ``.npy`` file (format 1.0) of one ``(H, W)`` ``uint8`` array. No echocare is needed to read it::

    tar xf shard-000000.tar && zstd -d 'ds/img_00001.npy.zst' && python -c \
        "import numpy; print(numpy.load('ds/img_00001.npy', allow_pickle=False).shape)"

or in Python: ``numpy.load(io.BytesIO(zstandard.ZstdDecompressor().decompress(data)), allow_pickle=False)``.
webdataset passes the member through as bytes (its decoders key on the last extension, ``zst``).

Decoding is a zstd decompress (~GB/s) plus a header parse, where PNG pays zlib inflate plus per-row filter
reconstruction; the cost is size (PNG's filters find the inter-pixel redundancy that plain zstd misses):
measured with ``bench/data_pipeline.py`` (docs/performance.md).
"""

from __future__ import annotations

import io

import numpy as np
import zstandard
from PIL import Image
from PIL.Image import DecompressionBombError

__all__ = ["RAW_ZSTD_EXT", "ZSTD_MAGIC", "decode_raw_zstd", "encode_raw_zstd", "is_zstd"]

RAW_ZSTD_EXT = "npy.zst"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_NPY_HEADER_MAX = 4096  # a 2-D uint8 .npy header is 128 bytes


def encode_raw_zstd(img: np.ndarray, level: int = 3) -> bytes:
    """Encode a ``(H, W)`` uint8 array as a zstd frame of its ``.npy`` bytes (deterministic)."""
    if img.dtype != np.uint8 or img.ndim != 2:
        raise ValueError(f"raw-zstd needs a 2-D uint8 array, got {img.dtype} {img.shape}")
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.ascontiguousarray(img), version=(1, 0), allow_pickle=False)
    return zstandard.ZstdCompressor(level=level, write_content_size=True, write_checksum=True).compress(buf.getvalue())


def is_zstd(data: bytes) -> bool:
    """Whether ``data`` starts with the zstd frame magic."""
    return data[:4] == ZSTD_MAGIC


def decode_raw_zstd(data: bytes) -> np.ndarray:
    """Decode :func:`encode_raw_zstd` bytes to a ``(H, W)`` uint8 array (never unpickles).

    Raises:
        DecompressionBombError: the frame would expand beyond ``2 * PIL.Image.MAX_IMAGE_PIXELS`` bytes
            (read from the frame header, before decompressing).
        ValueError: not a zstd frame, no content size in the header, corrupt data, or not a 2-D uint8 ``.npy``.
    """
    limit = 2 * int(Image.MAX_IMAGE_PIXELS or 1 << 28) + _NPY_HEADER_MAX
    try:
        size = zstandard.frame_content_size(data)
    except zstandard.ZstdError as exc:
        raise ValueError(f"not a zstd frame: {exc}") from exc
    if size < 0:  # -1: unknown; echocare always writes it, so this frame was not made by encode_raw_zstd
        raise ValueError("zstd frame without a content size in its header (not a raw-zstd sample)")
    if size > limit:
        raise DecompressionBombError(f"zstd frame would expand to {size} bytes, above {limit}")
    try:
        raw = zstandard.ZstdDecompressor().decompress(data, max_output_size=size)
    except zstandard.ZstdError as exc:
        raise ValueError(f"corrupt zstd frame: {exc}") from exc
    try:
        arr = np.lib.format.read_array(io.BytesIO(raw), allow_pickle=False)
    except (ValueError, EOFError, OSError) as exc:
        raise ValueError(f"not an .npy array: {exc}") from exc
    if arr.dtype != np.uint8 or arr.ndim != 2:
        raise ValueError(f"raw-zstd holds {arr.dtype} {arr.shape}; expected a 2-D uint8 image")
    return arr
