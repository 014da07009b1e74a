"""Input discovery and decoding: image files, videos (PyAV) and DICOM (pydicom).

Decoders return or yield raw arrays (any dtype / channel count; curation turns
them into grayscale). Failures raise :class:`SourceError` carrying a short
machine-readable ``reason`` (``empty-file``, ``not-an-image``, ``truncated``,
``decode-error``, ``decompression-bomb``, ``not-a-video``, ``not-dicom``, ``no-pixel-data``,
``truncated-pixel-data``, ``dicom-decode-error``) that goes into the build report.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)


class SourceError(Exception):
    """An input could not be decoded.

    Attributes:
        reason: short report reason, e.g. ``"truncated"``.
        detail: human-readable explanation.
        frame: frame index where decoding failed (multi-frame inputs), else ``None``.
    """

    def __init__(self, reason: str, detail: str, frame: int | None = None) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        self.frame = frame


@lru_cache(maxsize=256)
def glob_regex(pattern: str) -> re.Pattern[str]:
    """Compile a root-relative glob (``**`` = any number of folders) to a regex.

    Matching is case-insensitive so ``*.png`` also takes ``SCAN.PNG``.
    """
    out, i, n = [], 0, len(pattern)
    while i < n:
        c = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:[^/]+/)*")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif c == "*":
            out.append("[^/]*")
            i += 1
        elif c == "?":
            out.append("[^/]")
            i += 1
        elif c == "[":
            j = pattern.find("]", i + 1)
            if j < 0:
                out.append(re.escape(c))
                i += 1
            else:
                body = pattern[i + 1:j]
                out.append("[" + ("^" + body[1:] if body.startswith("!") else body) + "]")
                i = j + 1
        else:
            out.append(re.escape(c))
            i += 1
    return re.compile("^" + "".join(out) + "$", re.IGNORECASE)


def list_files(root: str | Path, include: list[str], exclude: list[str] | None = None) -> list[str]:
    """Root-relative posix paths of files matching ``include`` and no ``exclude`` glob, sorted.

    Hidden files and folders (name starting with ``.``) are skipped; symbolic links
    to folders are followed, each real folder once.
    """
    inc = [glob_regex(g) for g in include]
    exc = [glob_regex(g) for g in exclude or []]
    root = Path(root)
    found = []
    seen: set[str] = set()  # real paths of visited folders: symlinked folders are followed once
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:
            dirnames[:] = []
            continue
        seen.add(real)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        rel_dir = Path(dirpath).relative_to(root).as_posix()
        for name in filenames:
            if name.startswith("."):
                continue
            rel = name if rel_dir == "." else f"{rel_dir}/{name}"
            if any(r.match(rel) for r in inc) and not any(r.match(rel) for r in exc):
                found.append(rel)
    return sorted(found)


def _check_file(path: Path) -> None:
    if not path.is_file():
        raise SourceError("unreadable", f"{path} is not a readable file")
    if path.stat().st_size == 0:
        raise SourceError("empty-file", "file has 0 bytes")


def read_image(path: str | Path) -> np.ndarray:
    """Decode an image file (PNG/JPEG/BMP/TIFF/..., 8 or 16 bit, gray / RGB / palette).

    Returns:
        ``(H, W)`` or ``(H, W, 3)`` array (16-bit and float data keep their dtype).
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    _check_file(path)
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F", "L"):
                arr = np.asarray(im)
            elif im.mode in ("LA", "La"):
                arr = np.asarray(im.convert("L"))
            else:  # RGB, RGBA, P, CMYK, YCbCr, 1, ...
                arr = np.asarray(im.convert("RGB"))
    except UnidentifiedImageError as err:
        raise SourceError("not-an-image", str(err)) from None
    except Image.DecompressionBombError as err:  # more pixels than PIL's limit: refused before decoding
        raise SourceError("decompression-bomb", str(err)) from None
    except PermissionError as err:
        raise SourceError("unreadable", str(err)) from None
    except (OSError, SyntaxError, ValueError, EOFError) as err:
        msg = str(err) or type(err).__name__
        reason = "truncated" if ("truncat" in msg.lower() or isinstance(err, EOFError)) else "decode-error"
        raise SourceError(reason, msg) from None
    if arr.size == 0:
        raise SourceError("decode-error", "decoded image is empty")
    return arr


def iter_video_frames(path: str | Path, stride: int = 10) -> Iterator[tuple[int, np.ndarray]]:
    """Decode every ``stride``-th frame (0, stride, 2*stride, ...) of a video as ``(H, W)`` uint8.

    Raises:
        SourceError: ``not-a-video`` when the file has no video stream, ``decode-error``
            when decoding fails (frames yielded before the failure stay valid).
    """
    import av

    path = Path(path)
    _check_file(path)
    try:
        container = av.open(str(path))
    except Exception as err:  # noqa: BLE001 - PyAV raises many FFmpeg error types
        raise SourceError("not-a-video", f"{type(err).__name__}: {err}") from None
    with container:
        if not container.streams.video:
            raise SourceError("not-a-video", "no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        i = -1
        try:
            for i, frame in enumerate(container.decode(stream)):
                if i % stride == 0:
                    yield i, frame.to_ndarray(format="gray")
        except SourceError:
            raise
        except Exception as err:  # noqa: BLE001
            raise SourceError("decode-error", f"{type(err).__name__}: {err}", i + 1) from None
        if i < 0:
            raise SourceError("decode-error", "video has no decodable frame")


def dicom_frame_count(ds: object) -> int:
    """Number of frames of a pydicom dataset (1 when ``NumberOfFrames`` is absent)."""
    try:
        return max(1, int(getattr(ds, "NumberOfFrames", 1) or 1))
    except (TypeError, ValueError):
        return 1


def iter_dicom_frames(path: str | Path, stride: int = 10) -> Iterator[tuple[int | None, np.ndarray]]:
    """Decode a DICOM file: single frame -> ``(None, img)``; multi-frame -> every ``stride``-th.

    YBR_FULL / YBR_FULL_422 / YBR_ICT / YBR_RCT become RGB (pydicom), PALETTE COLOR
    goes through its LUT, MONOCHROME1 is inverted so that bright means echo.
    Compressed transfer syntaxes decode when a pydicom plugin (pylibjpeg, pillow) can.
    """
    import pydicom
    from pydicom.errors import InvalidDicomError
    from pydicom.pixels import apply_color_lut, iter_pixels

    path = Path(path)
    _check_file(path)
    try:
        ds = pydicom.dcmread(str(path))
    except (InvalidDicomError, EOFError, OSError, ValueError, TypeError, KeyError) as err:
        raise SourceError("not-dicom", f"{type(err).__name__}: {err}") from None
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        if _has_pixel_data_tag(path):  # the element starts in the file but pydicom dropped it: cut short
            raise SourceError("truncated-pixel-data", "the file ends inside its pixel data element")
        raise SourceError("no-pixel-data", "DICOM has no pixel data element")
    n = dicom_frame_count(ds)
    indices = list(range(0, n, stride)) if n > 1 else [0]
    photometric = str(getattr(ds, "PhotometricInterpretation", "")).upper()
    done = 0
    quiet = _DropRecords()
    decoder_log = logging.getLogger("pydicom.pixels.decoders.base")
    decoder_log.addFilter(quiet)  # the failure is reported in the build report instead
    try:
        for arr in iter_pixels(ds, indices=indices):
            if photometric == "PALETTE COLOR":
                arr = apply_color_lut(arr, ds)
            elif photometric == "MONOCHROME1":
                arr = arr.max() - arr if arr.size else arr
            yield (indices[done] if n > 1 else None), np.asarray(arr)
            done += 1
    except Exception as err:  # noqa: BLE001 - decoders raise anything from RuntimeError to ValueError
        frame = indices[done] if n > 1 and done < len(indices) else None
        reason = "truncated-pixel-data" if "less than expected" in str(err) else "dicom-decode-error"
        raise SourceError(reason, f"{type(err).__name__}: {err}", frame) from None
    finally:
        decoder_log.removeFilter(quiet)


_PIXEL_DATA_TAGS = (b"\xe0\x7f\x10\x00", b"\x7f\xe0\x00\x10")  # (7FE0,0010), little / big endian


def _has_pixel_data_tag(path: Path, chunk: int = 1 << 20) -> bool:
    """Whether the raw bytes of ``path`` contain the Pixel Data tag (read in chunks)."""
    tail = b""
    with path.open("rb") as fh:
        while block := fh.read(chunk):
            data = tail + block
            if any(tag in data for tag in _PIXEL_DATA_TAGS):
                return True
            tail = data[-3:]
    return False


class _DropRecords(logging.Filter):
    """Drop pydicom's own error logs of a decode failure (it is reported with its reason)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno < logging.ERROR
