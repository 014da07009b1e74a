"""Image curation primitives for shard building (numpy / scipy only).

Everything here works on decoded 2-D ``uint8`` grayscale arrays ``(H, W)``:

* :func:`to_gray_uint8` turns whatever a decoder produced (RGB, 16-bit, float,
  palette-free) into 8-bit grayscale;
* :func:`count_nonzero` feeds the "fewer than 1,000 valid pixels" rule (report §2.2);
* :func:`crop_scan_area` strips UI borders and burned-in text around the scan;
* :func:`pixel_hash` is the exact-duplicate key, :func:`dhash` / :func:`phash`
  are perceptual hashes for near-duplicates (similarity = 1 - hamming / bits);
* :class:`NearDuplicateIndex` finds near-duplicates with a multi-index
  (pigeonhole) lookup so the cost does not grow with the square of the data;
* :func:`noise_frames` is the seed-000 video noise filter: DBSCAN over a video's
  frames, keeping only a cluster that holds more than half of the frames.
"""

from __future__ import annotations

import hashlib
import math

import numpy as np
from PIL import Image
from scipy import ndimage

# ITU-R BT.601 luma weights, the same PIL uses for ``convert("L")``.
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float64)


def to_gray_uint8(arr: np.ndarray) -> np.ndarray:
    """Convert a decoded image to 2-D 8-bit grayscale.

    Args:
        arr: ``(H, W)``, ``(H, W, 1)``, ``(H, W, 3)`` or ``(H, W, 4)`` array of any
            integer or float dtype. RGB(A) is reduced with BT.601 luma (alpha is
            dropped). Data above 255 (12/16-bit, float) is divided by the full range
            of the smallest bit depth holding its maximum (4095 for 12-bit data,
            65535 for 16-bit), so relative brightness is kept; float data in
            [0, 1] is multiplied by 255; negative values are clipped to 0.

    Returns:
        ``(H, W)`` ``uint8`` array.

    Raises:
        ValueError: if the array is not an image shape.
    """
    a = np.asarray(arr)
    if a.ndim == 3 and a.shape[-1] in (1, 3, 4):
        if a.shape[-1] == 1:
            a = a[..., 0]
        else:
            a = a[..., :3].astype(np.float64) @ _LUMA  # (H, W)
    if a.ndim != 2 or a.shape[0] == 0 or a.shape[1] == 0:
        raise ValueError(f"not a 2-D image: array of shape {tuple(np.shape(arr))}")
    if a.dtype == np.uint8:
        return a
    a = a.astype(np.float64)
    a = np.nan_to_num(a, nan=0.0, posinf=0.0, neginf=0.0)
    a = np.clip(a, 0.0, None)
    top = float(a.max()) if a.size else 0.0
    if np.issubdtype(np.asarray(arr).dtype, np.floating) and 0.0 < top <= 1.0:
        a = a * 255.0  # float image in [0, 1]
    elif top > 255.0:
        full = 2.0 ** math.ceil(math.log2(top + 1.0)) - 1.0  # smallest bit depth holding the data
        a = a * (255.0 / full)
    return np.clip(np.rint(a), 0, 255).astype(np.uint8)


def count_nonzero(img: np.ndarray) -> int:
    """Number of non-zero ("valid") pixels of a grayscale image."""
    return int(np.count_nonzero(img))


def crop_scan_area(
    img: np.ndarray,
    threshold: int = 8,
    close_frac: float = 0.02,
    min_area_frac: float = 0.05,
    work_size: int = 128,
) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """Crop an ultrasound frame to its scan area (fan or rectangle).

    The image is thresholded (``> threshold``), reduced by block-max to about
    ``work_size`` pixels on its shorter side (speed), closed morphologically with
    a square of side ``close_frac * min(H, W)`` (speckle holes and thin dark lines
    inside the fan disappear), holes are filled and the largest connected
    component is kept; the crop is its bounding box, refined at full resolution
    by trimming empty border rows / columns. Burned-in text, rulers and logos are
    separate small components and fall outside the box.

    Args:
        img: ``(H, W)`` uint8 image.
        threshold: gray level above which a pixel counts as signal.
        close_frac: closing structure size as a fraction of the shorter side.
        min_area_frac: if the largest component covers less than this fraction
            of the image, the image is returned unchanged (no reliable scan area).
        work_size: shorter side of the reduced mask the components are found on.

    Returns:
        ``(cropped, (top, left, bottom, right))`` with exclusive bottom/right.
    """
    h, w = img.shape
    full = (img, (0, 0, h, w))
    fg = img > threshold  # (H, W) bool
    if not fg.any():
        return full
    k = max(1, min(h, w) // work_size)  # block size of the reduced mask
    hp, wp = -(-h // k) * k, -(-w // k) * k
    small = np.pad(fg, ((0, hp - h), (0, wp - w))).reshape(hp // k, k, wp // k, k).any(axis=(1, 3))  # (h/k, w/k)
    size = max(3, int(round(close_frac * min(small.shape))) | 1)
    closed = ndimage.binary_closing(np.pad(small, size), structure=np.ones((size, size), bool))
    closed = ndimage.binary_fill_holes(closed[size:-size, size:-size])
    labels, n = ndimage.label(closed)
    if n == 0:
        return full
    areas = np.bincount(labels.ravel())[1:]  # (n,)
    biggest = int(np.argmax(areas)) + 1
    if areas[biggest - 1] < min_area_frac * small.size:
        return full
    comp = labels == biggest
    rows, cols = np.flatnonzero(comp.any(axis=1)), np.flatnonzero(comp.any(axis=0))
    top, bottom = int(rows[0]) * k, min(h, (int(rows[-1]) + 1) * k)
    left, right = int(cols[0]) * k, min(w, (int(cols[-1]) + 1) * k)
    inner = fg[top:bottom, left:right]
    r_any, c_any = np.flatnonzero(inner.any(axis=1)), np.flatnonzero(inner.any(axis=0))
    top, bottom = top + int(r_any[0]), top + int(r_any[-1]) + 1
    left, right = left + int(c_any[0]), left + int(c_any[-1]) + 1
    return img[top:bottom, left:right], (top, left, bottom, right)


def pixel_hash(img: np.ndarray) -> str:
    """Exact-duplicate key: sha256 of the shape and raw bytes of a grayscale array."""
    a = np.ascontiguousarray(img)
    h = hashlib.sha256(f"{a.shape}|{a.dtype.str}|".encode())
    h.update(a.tobytes())
    return h.hexdigest()


def _small(img: np.ndarray, width: int, height: int) -> np.ndarray:
    """Area-downsample an image to ``(height, width)`` float64."""
    pil = Image.fromarray(img).resize((width, height), Image.Resampling.BOX)
    return np.asarray(pil, dtype=np.float64)


def _bits_to_int(bits: np.ndarray) -> int:
    out = 0
    for b in bits.ravel():
        out = (out << 1) | int(bool(b))
    return out


def dhash(img: np.ndarray, hash_size: int = 8) -> int:
    """Difference hash: sign of horizontal gradients of a ``(s, s+1)`` thumbnail.

    Returns an integer of ``hash_size ** 2`` bits.
    """
    small = _small(img, hash_size + 1, hash_size)  # (s, s+1)
    return _bits_to_int(small[:, 1:] > small[:, :-1])


def _dct_matrix(n: int) -> np.ndarray:
    """Orthonormal DCT-II matrix ``(n, n)``."""
    k = np.arange(n)[:, None]
    i = np.arange(n)[None, :]
    m = np.cos(np.pi * (2 * i + 1) * k / (2 * n)) * math.sqrt(2.0 / n)
    m[0] /= math.sqrt(2.0)
    return m


def phash(img: np.ndarray, hash_size: int = 8, highfreq_factor: int = 4) -> int:
    """Perceptual hash: low DCT frequencies of a thumbnail compared to their median.

    Returns an integer of ``hash_size ** 2`` bits.
    """
    n = hash_size * highfreq_factor
    small = _small(img, n, n)  # (n, n)
    d = _dct_matrix(n)
    coeffs = (d @ small @ d.T)[:hash_size, :hash_size]  # (s, s)
    return _bits_to_int(coeffs > np.median(coeffs))


def similarity(a: int, b: int, bits: int) -> float:
    """Hash similarity ``1 - hamming(a, b) / bits``."""
    return 1.0 - bin(a ^ b).count("1") / bits


class NearDuplicateIndex:
    """Find near-duplicate perceptual hashes without comparing against everything.

    Pigeonhole rule: two ``bits``-bit hashes within Hamming distance ``d`` agree
    exactly on at least one of ``d + 1`` disjoint bands, so each band value is a
    dictionary key and only hashes sharing a band are verified.

    Args:
        min_similarity: a hash is a near-duplicate when ``1 - hamming / bits >= min_similarity``.
        bits: number of bits of every hash.
    """

    def __init__(self, min_similarity: float, bits: int = 64) -> None:
        if not 0.0 < min_similarity <= 1.0:
            raise ValueError(f"near-duplicate similarity must be in (0, 1], got {min_similarity}")
        self.bits = bits
        self.max_distance = int(math.floor((1.0 - min_similarity) * bits + 1e-9))
        n_bands = min(bits, self.max_distance + 1)
        edges = np.linspace(0, bits, n_bands + 1).round().astype(int)
        self._bands = [(int(lo), int(hi)) for lo, hi in zip(edges[:-1], edges[1:])]
        self._tables: list[dict[int, list[int]]] = [{} for _ in self._bands]
        self._hashes: list[int] = []
        self._keys: list[str] = []

    def __len__(self) -> int:
        return len(self._hashes)

    def _band_values(self, h: int) -> list[int]:
        return [(h >> lo) & ((1 << (hi - lo)) - 1) for lo, hi in self._bands]

    def query(self, h: int) -> str | None:
        """Key of the first indexed hash within the distance limit, else ``None``."""
        best: int | None = None
        for table, value in zip(self._tables, self._band_values(h)):
            for idx in table.get(value, ()):
                if (best is None or idx < best) and bin(self._hashes[idx] ^ h).count("1") <= self.max_distance:
                    best = idx
        return None if best is None else self._keys[best]

    def add(self, h: int, key: str) -> None:
        """Index hash ``h`` under sample ``key``."""
        idx = len(self._hashes)
        self._hashes.append(h)
        self._keys.append(key)
        for table, value in zip(self._tables, self._band_values(h)):
            table.setdefault(value, []).append(idx)


def frame_features(img: np.ndarray, size: int = 32) -> np.ndarray:
    """Small normalised thumbnail of a frame, flattened: ``(size * size,)`` in [0, 1]."""
    return _small(img, size, size).ravel() / 255.0


def dbscan(x: np.ndarray, eps: float, min_samples: int) -> np.ndarray:
    """Plain DBSCAN over the rows of ``x`` (euclidean); ``-1`` marks noise.

    Args:
        x: ``(N, F)`` features; N is the number of frames of one video (small).
        eps: neighbourhood radius.
        min_samples: points (self included) needed for a core point.

    Returns:
        ``(N,)`` int labels, clusters numbered 0, 1, ... in order of discovery.
    """
    n = x.shape[0]
    sq = (x * x).sum(1)
    dist = np.sqrt(np.clip(sq[:, None] + sq[None, :] - 2.0 * x @ x.T, 0.0, None))  # (N, N)
    neighbours = [np.flatnonzero(row <= eps) for row in dist]
    core = np.array([len(nb) >= min_samples for nb in neighbours], dtype=bool)
    labels = np.full(n, -1, dtype=np.int64)
    cluster = 0
    for i in range(n):
        if labels[i] != -1 or not core[i]:
            continue
        labels[i] = cluster
        stack = [i]
        while stack:
            j = stack.pop()
            if not core[j]:
                continue
            for k in neighbours[j]:
                if labels[k] == -1:
                    labels[k] = cluster
                    stack.append(int(k))
        cluster += 1
    return labels


def noise_frames(
    frames: list[np.ndarray],
    eps: float | None = None,
    min_samples: int = 3,
    eps_scale: float = 3.0,
) -> list[bool]:
    """Flag the noise frames of one video / image set (seed 000 method).

    Frames are clustered with DBSCAN on 32x32 thumbnails (:func:`frame_features`);
    see :func:`noise_flags`.

    Args:
        frames: ``(H, W)`` uint8 frames (any sizes).
        eps: DBSCAN radius; ``None`` = automatic.
        min_samples: DBSCAN core size.
        eps_scale: multiplier of the automatic radius.

    Returns:
        One flag per frame, ``True`` = noise.
    """
    if not frames:
        return []
    return noise_flags(np.stack([frame_features(f) for f in frames]), eps, min_samples, eps_scale)


def noise_flags(
    x: np.ndarray,
    eps: float | None = None,
    min_samples: int = 3,
    eps_scale: float = 3.0,
    max_frames: int = 2000,
) -> list[bool]:
    """DBSCAN noise decision over frame features ``x: (N, F)`` in [0, 1].

    A cluster is valid only if it holds more than half of the frames, so there
    is at most one; frames outside it are noise. When no cluster is valid (a
    video whose content keeps changing) nothing is flagged: dropping a whole
    video is never done silently.

    Args:
        x: ``(N, F)`` features, one row per frame.
        eps: DBSCAN radius; ``None`` = ``eps_scale`` times the median distance of
            each frame to its ``min_samples - 1``-th nearest neighbour.
        min_samples: DBSCAN core size.
        eps_scale: multiplier of the automatic radius.
        max_frames: above this many frames, DBSCAN runs on an evenly spaced subset
            (memory stays bounded) and each frame takes its nearest member's flag.

    Returns:
        One flag per row, ``True`` = noise.
    """
    n = x.shape[0]
    if n < max(3, min_samples):
        return [False] * n
    if n > max_frames:  # cluster an evenly spaced subset, give every frame its nearest member's flag
        pick = np.linspace(0, n - 1, max_frames).round().astype(int)
        sub = np.asarray(noise_flags(x[pick], eps, min_samples, eps_scale, max_frames))
        flags = np.empty(n, dtype=bool)
        for lo in range(0, n, 1024):  # (1024, max_frames) distance blocks
            blk = x[lo:lo + 1024]
            d = (blk * blk).sum(1)[:, None] - 2.0 * blk @ x[pick].T + (x[pick] ** 2).sum(1)[None, :]
            flags[lo:lo + 1024] = sub[np.argmin(d, axis=1)]
        return flags.tolist()
    if eps is None:
        sq = (x * x).sum(1)
        dist = np.sqrt(np.clip(sq[:, None] + sq[None, :] - 2.0 * x @ x.T, 0.0, None))  # (N, N)
        kth = np.sort(dist, axis=1)[:, min(min_samples - 1, n - 1)]  # (N,)
        eps = max(float(np.median(kth)) * eps_scale, 1e-3)
    labels = dbscan(x, eps, min_samples)
    if not (labels >= 0).any():
        return [False] * n
    counts = np.bincount(labels[labels >= 0])
    valid = np.flatnonzero(counts * 2 > n)
    if valid.size == 0:
        return [False] * n
    return [bool(lab != valid[0]) for lab in labels]


def resize_shorter(img: np.ndarray, size: int | None) -> np.ndarray:
    """Resize so the shorter side equals ``size`` (aspect kept, bicubic, antialiased).

    ``size`` of ``None`` or ``0`` returns the image unchanged.
    """
    if not size:
        return img
    h, w = img.shape
    if min(h, w) == size:
        return img
    scale = size / min(h, w)
    new_w, new_h = max(1, int(round(w * scale))), max(1, int(round(h * scale)))
    if h <= w:
        new_h = size
    else:
        new_w = size
    out = Image.fromarray(img).resize((new_w, new_h), Image.Resampling.BICUBIC)
    return np.asarray(out, dtype=np.uint8)
