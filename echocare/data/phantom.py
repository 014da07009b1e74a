"""Synthetic B-mode ultrasound phantoms, labeled with ontology paths.

Each image is built in four steps: an echogenicity map of organ-like ellipses
(anechoic chambers / vessels, hypoechoic nodules, hyperechoic rims and bone),
acoustic shadows cast along the beam behind strong reflectors, correlated
Rayleigh speckle (magnitude of low-passed complex Gaussian noise) with depth
attenuation and log compression, and finally the probe footprint: a sector
(phased / convex array, apex at the top) or a rectangle (linear array).

:func:`phantom_image` makes one image; :func:`write_phantom_shards` writes a
labeled set through the same pipeline as ``echocare shards build``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from echocare.data.pipeline import PipelineOptions, candidate_from_array, run_pipeline
from echocare.ontology import Ontology, load_ontology

logger = logging.getLogger(__name__)

# kind -> ontology path candidates, most specific first (the first the ontology knows is used).
PHANTOM_KINDS: dict[str, tuple[str, ...]] = {
    "a4c": ("thorax/heart/a4c", "thorax/heart"),
    "thyroid": ("head_neck/thyroid",),
    "liver": ("abdomen/liver",),
    "kidney": ("abdomen/kidney",),
    "fetal_head": ("fetus/brain", "fetus/head", "fetus"),
    "breast": ("thorax/breast", "breast"),
    "unlabeled": (),
}
KIND_GEOMETRY = {"a4c": "sector", "thyroid": "linear", "liver": "sector", "kidney": "sector",
                 "fetal_head": "sector", "breast": "linear"}


@dataclass
class _Frame:
    """Pixel grids of one image: cartesian (x, y) and beam coordinates (depth, lateral)."""

    x: np.ndarray  # (S, S) in [0, 1]
    y: np.ndarray  # (S, S) in [0, 1], depth direction downwards
    depth: np.ndarray  # (S, S) distance along the beam, normalised to the field depth
    lateral: np.ndarray  # (S, S) beam angle (sector, rad) or x (linear)
    inside: np.ndarray  # (S, S) bool footprint of the probe


def _geometry(rng: np.random.Generator, size: int, kind: str) -> _Frame:
    y, x = np.mgrid[0:size, 0:size].astype(np.float64) / (size - 1)
    if kind == "sector":
        half = np.deg2rad(rng.uniform(30.0, 45.0))
        apex_y = -rng.uniform(0.0, 0.08)
        r0, r1 = rng.uniform(0.02, 0.12), rng.uniform(0.9, 1.0)
        dx, dy = x - 0.5, y - apex_y
        r = np.hypot(dx, dy)
        theta = np.arctan2(dx, dy)
        inside = (np.abs(theta) <= half) & (r >= r0) & (r <= r1)
        return _Frame(x, y, (r - r0) / (r1 - r0), theta, inside)
    margin = rng.uniform(0.04, 0.15)
    top, bottom = rng.uniform(0.02, 0.08), rng.uniform(0.9, 1.0)
    inside = (x >= margin) & (x <= 1 - margin) & (y >= top) & (y <= bottom)
    return _Frame(x, y, (y - top) / (bottom - top), x, inside)


def _ellipse(f: _Frame, cx: float, cy: float, ax: float, ay: float, angle: float = 0.0) -> np.ndarray:
    """Signed ellipse field: < 1 inside. Shapes are drawn in cartesian coordinates."""
    c, s = np.cos(angle), np.sin(angle)
    u = ((f.x - cx) * c + (f.y - cy) * s) / ax
    v = (-(f.x - cx) * s + (f.y - cy) * c) / ay
    return u * u + v * v


def _shadow(f: _Frame, blocker: np.ndarray, strength: float) -> np.ndarray:
    """Attenuation (S, S) in (0, 1]: pixels deeper than a reflector on the same beam line."""
    size = blocker.shape[0]
    bins = np.clip(((f.lateral - f.lateral.min()) / (np.ptp(f.lateral) + 1e-9) * (size - 1)).astype(int), 0, size - 1)
    depth_masked = np.where(blocker, f.depth, np.inf)
    first = np.full(size, np.inf)
    np.minimum.at(first, bins.ravel(), depth_masked.ravel())  # shallowest reflector per beam line
    behind = f.depth > first[bins]
    return np.where(behind, 1.0 - strength, 1.0)


def _echo_map(rng: np.random.Generator, f: _Frame, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """Echogenicity (S, S) in [0, 1] and a bool map of strong reflectors casting shadows."""
    e = np.full(f.x.shape, rng.uniform(0.35, 0.55))
    e += 0.08 * np.sin(2 * np.pi * (f.y * rng.uniform(2, 5) + rng.uniform(0, 1)))  # tissue layers
    strong = np.zeros(f.x.shape, dtype=bool)
    j = lambda s: rng.uniform(-s, s)  # noqa: E731 - small positional jitter
    if kind == "a4c":
        cx, cy, sep = 0.5 + j(0.03), 0.55 + j(0.04), rng.uniform(0.09, 0.12)
        e = np.where(_ellipse(f, cx, cy, 0.33, 0.38) < 1, 0.7, e)  # myocardium / pericardium
        for sx, sy, ax, ay in ((-1, -1, 0.1, 0.15), (1, -1, 0.09, 0.13), (-1, 1, 0.1, 0.11), (1, 1, 0.09, 0.1)):
            e = np.where(_ellipse(f, cx + sx * sep, cy + sy * sep * 1.3, ax, ay, j(0.2)) < 1, 0.03, e)
    elif kind == "thyroid":
        e = np.where(_ellipse(f, 0.5 + j(0.05), 0.4 + j(0.05), 0.32, 0.14) < 1, 0.65, e)  # gland
        e = np.where(_ellipse(f, 0.5 + j(0.12), 0.4 + j(0.04), rng.uniform(0.05, 0.09), rng.uniform(0.05, 0.08)) < 1,
                     0.15, e)  # round hypoechoic nodule
        trachea = _ellipse(f, rng.choice([0.12, 0.88]), 0.35, 0.07, 0.07) < 1
        e = np.where(trachea, 0.95, e)
        strong |= trachea
    elif kind == "liver":
        e = np.where(f.depth > 0.1, 0.5 + 0.05 * np.sin(9 * f.x), e)
        for _ in range(int(rng.integers(2, 5))):  # vessels
            e = np.where(_ellipse(f, rng.uniform(0.3, 0.7), rng.uniform(0.35, 0.8), rng.uniform(0.02, 0.05),
                                  rng.uniform(0.02, 0.04), j(1.5)) < 1, 0.03, e)
        e = np.where(np.abs(f.depth - rng.uniform(0.85, 0.95)) < 0.02, 1.0, e)  # diaphragm
    elif kind == "kidney":
        ang = j(0.6)
        outer = _ellipse(f, 0.5 + j(0.05), 0.55 + j(0.05), 0.28, 0.14, ang)
        e = np.where(outer < 1.15, 0.9, e)  # capsule
        e = np.where(outer < 1, 0.2, e)  # hypoechoic cortex
        e = np.where(_ellipse(f, 0.5, 0.55, 0.15, 0.05, ang) < 1, 0.85, e)  # sinus fat
    elif kind == "fetal_head":
        cx, cy, ax, ay, ang = 0.5 + j(0.05), 0.55 + j(0.05), rng.uniform(0.25, 0.32), rng.uniform(0.18, 0.24), j(0.5)
        ring = _ellipse(f, cx, cy, ax, ay, ang)
        e = np.where(ring < 1, 0.25, e)  # brain
        skull = (ring > 0.85) & (ring < 1.08)
        e = np.where(skull, 1.0, e)
        c, s = np.cos(ang), np.sin(ang)
        midline = np.abs(-(f.x - cx) * s + (f.y - cy) * c) < 0.008
        e = np.where(midline & (ring < 0.8), 0.8, e)
        strong |= skull & (f.y > cy + 0.1)
    elif kind == "breast":
        e = np.where(f.depth < 0.15, 0.3, e)  # subcutaneous fat
        lesion = _ellipse(f, 0.5 + j(0.15), 0.45 + j(0.1), rng.uniform(0.07, 0.14), rng.uniform(0.05, 0.09), j(0.4))
        lesion = lesion * (1 + 0.25 * np.sin(7 * np.arctan2(f.y - 0.45, f.x - 0.5)))  # irregular margin
        e = np.where(lesion < 1, 0.1, e)
        strong |= (lesion < 1) & (lesion > 0.7)
    else:  # unlabeled: random blobs
        for _ in range(int(rng.integers(1, 5))):
            e = np.where(_ellipse(f, rng.uniform(0.2, 0.8), rng.uniform(0.2, 0.9), rng.uniform(0.03, 0.2),
                                  rng.uniform(0.03, 0.2), j(1.5)) < 1, rng.uniform(0.0, 1.0), e)
    return np.clip(e, 0.0, 1.0), strong


def phantom_image(rng: np.random.Generator, size: int = 256, kind: str = "a4c") -> tuple[np.ndarray, list[str]]:
    """Generate one synthetic B-mode image.

    Args:
        rng: numpy generator (all randomness comes from it).
        size: output side length in pixels (square image).
        kind: one of :data:`PHANTOM_KINDS` (``"unlabeled"`` uses a random geometry).

    Returns:
        ``(image, paths)``: ``(size, size)`` uint8 image (zero outside the probe
        footprint) and its nominal ontology path list (empty for ``"unlabeled"``).
    """
    if kind not in PHANTOM_KINDS:
        raise ValueError(f"unknown phantom kind {kind!r}; expected one of {sorted(PHANTOM_KINDS)}")
    if size < 16:
        raise ValueError(f"phantom size must be >= 16, got {size}")
    geometry = KIND_GEOMETRY.get(kind) or str(rng.choice(["sector", "linear"]))
    f = _geometry(rng, size, geometry)
    echo, strong = _echo_map(rng, f, kind)
    if strong.any():
        echo = echo * _shadow(f, strong & f.inside, rng.uniform(0.6, 0.85))
    # correlated speckle: |low-passed complex gaussian| is Rayleigh distributed
    sig = (size / 256.0) * np.array([1.2, 2.0])  # (axial, lateral) grain in pixels
    re = ndimage.gaussian_filter(rng.standard_normal((size, size)), sig)
    im = ndimage.gaussian_filter(rng.standard_normal((size, size)), sig)
    speckle = np.hypot(re, im)
    speckle /= speckle.mean() + 1e-12
    attenuation = np.exp(-rng.uniform(0.8, 1.8) * np.clip(f.depth, 0, None))  # (S, S)
    env = echo * speckle * attenuation
    gain = rng.uniform(20.0, 60.0)
    img = np.log1p(gain * env) / np.log1p(gain * 2.5)
    img = np.where(f.inside, np.clip(img, 0.0, 1.0), 0.0)
    out = np.round(img * 255.0).astype(np.uint8)
    paths = list(PHANTOM_KINDS[kind][:1])
    return out, paths


def resolve_kind_paths(ontology: Any) -> dict[str, list[str]]:
    """Map each phantom kind to canonical ids of ``ontology`` (first known candidate).

    A labeled kind none of whose candidates the ontology knows becomes unlabeled,
    with a warning naming the kind.
    """
    resolved: dict[str, list[str]] = {}
    for kind, candidates in PHANTOM_KINDS.items():
        hit = next((c for c in candidates if c in ontology), None)
        if candidates and hit is None:
            logger.warning("phantom kind %r: none of %s is in the ontology; its images are unlabeled",
                           kind, list(candidates))
        resolved[kind] = [ontology.validate_path(hit)] if hit else []
    return resolved


def write_phantom_shards(
    out_dir: str | Path,
    n: int,
    seed: int = 0,
    image_size: int = 256,
    ontology: Any = None,
    kinds: Sequence[str] | None = None,
    shard_max_count: int = 10_000,
    shard_max_bytes: int = 1 << 30,
    image_format: str = "png",
) -> dict[str, Any]:
    """Write ``n`` labeled phantom images as shards (``index.json``, build report included).

    Sample ``i`` depends only on ``(seed, i)``; kinds cycle through ``kinds``.
    Labeled images carry ``label_space`` = all phantom paths, so the other
    phantom organs are known negatives; unlabeled images have no label space.

    Args:
        out_dir: shard folder.
        n: number of images.
        seed: random seed.
        image_size: side length of the (square) images.
        ontology: an :class:`~echocare.ontology.Ontology`, a YAML path or ``None`` (default ontology).
        kinds: subset / order of :data:`PHANTOM_KINDS` to cycle through (default all).
        shard_max_count: samples per shard limit.
        shard_max_bytes: bytes per shard limit.
        image_format: ``"png"``, ``"jpeg"`` or ``"raw-zstd"``.

    Returns:
        The ``index.json`` document.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    onto = ontology if isinstance(ontology, Ontology) else load_ontology(ontology)
    kinds = list(kinds) if kinds is not None else list(PHANTOM_KINDS)
    for k in kinds:
        if k not in PHANTOM_KINDS:
            raise ValueError(f"unknown phantom kind {k!r}; expected one of {sorted(PHANTOM_KINDS)}")
    paths = resolve_kind_paths(onto)
    space = sorted({p for k in kinds for p in paths[k]})
    units = [{"index": i, "kind": kinds[i % len(kinds)], "seed": seed, "size": image_size,
              "paths": paths[kinds[i % len(kinds)]], "label_space": space} for i in range(n)]
    options = PipelineOptions(
        image_size=image_size, image_format=image_format, shard_max_count=shard_max_count,
        shard_max_bytes=shard_max_bytes, ontology_hash=onto.hash,
    )
    fingerprint = {"phantom": {"n": n, "seed": seed, "size": image_size, "kinds": kinds, "paths": paths}}
    return run_pipeline(out_dir, units, _phantom_unit, options, fingerprint, workers=1)


def _phantom_unit(unit: dict[str, Any], options: Any) -> list[Any]:
    """Pipeline worker for one phantom image."""
    rng = np.random.default_rng([int(unit["seed"]), int(unit["index"])])
    img, _ = phantom_image(rng, int(unit["size"]), unit["kind"])
    meta = {"modality": "B-mode", "scanning_mode": KIND_GEOMETRY.get(unit["kind"], "mixed"),
            "device": "echocare-phantom", "country": None, "licence": "CC0-1.0",
            "group": f"phantom-{unit['index']:06d}", "phantom_kind": unit["kind"]}
    cand = candidate_from_array(
        img, options, dataset="phantom", source="phantom", frame=None,
        key_base=f"phantom/{unit['kind']}_{unit['index']:06d}", paths=list(unit["paths"]),
        label_space=list(unit["label_space"]) if unit["paths"] else None, metadata=meta,
    )
    return [cand]
