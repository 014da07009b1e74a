"""``echocare shards build``: manifest -> curated, deduplicated webdataset shards.

:func:`build_shards` validates the manifest, lists every input (sorted), turns
each input file (or image-set folder) into a unit and runs the shared ordered
pipeline (:mod:`echocare.data.pipeline`): workers decode and curate, the main
process deduplicates and writes. Output: ``shard-NNNNNN.tar``, ``index.json``,
``build_report.jsonl`` (one line per rejected input) and ``.progress/`` (resume).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from echocare.data import curation
from echocare.data.manifest import DatasetSpec, Manifest, ManifestError, load_manifest
from echocare.data.pipeline import Candidate, PipelineOptions, Rejection, candidate_from_array, run_pipeline
from echocare.data.sources import SourceError, iter_dicom_frames, iter_video_frames, list_files, read_image
from echocare.ontology import load_ontology

logger = logging.getLogger(__name__)


def _settings(spec: DatasetSpec) -> dict[str, Any]:
    """Per-dataset values the workers need (plain, picklable)."""
    return {
        "root": str(spec.root), "kind": spec.kind, "frame_stride": spec.frame_stride, "crop": spec.crop,
        "near": spec.near_duplicates, "min_nonzero": spec.min_nonzero_pixels, "metadata": spec.metadata,
        "label_space": spec.label_space,
        "noise": None if spec.noise is None else {"eps": spec.noise.eps, "min_samples": spec.noise.min_samples},
    }


def make_units(manifest: Manifest) -> list[dict[str, Any]]:
    """One unit per input file (per folder for ``image_sets``), in deterministic order.

    Labels and groups are resolved here, in the main process. A file that
    ``group_regex`` does not match falls back to its default group (the file, or
    the folder for image sets) and is counted in a warning.

    Raises:
        ManifestError: if a dataset's include globs match no file.
    """
    units: list[dict[str, Any]] = []
    for spec in manifest.datasets:
        files = list_files(spec.root, spec.include, spec.exclude)
        if not files:
            raise ManifestError(f"dataset {spec.name!r}: include globs {spec.include} match no file under "
                                f"{str(spec.root)!r}")
        unmatched = 0
        if spec.kind == "image_sets":
            folders: dict[str, list[str]] = {}
            for rel in files:
                folders.setdefault(str(PurePosixPath(rel).parent), []).append(rel)
            groups = sorted(folders.items())
        else:
            groups = [(rel, [rel]) for rel in files]
        for source, members in groups:
            group, ok = spec.group_for(source, source)
            unmatched += not ok
            items = []
            for rel in members:
                try:
                    st = (spec.root / rel).stat()
                    stat = [st.st_size, st.st_mtime_ns]
                except OSError:  # e.g. a dangling link: the worker reports it as unreadable
                    stat = None
                items.append({"source": rel, "paths": spec.paths_for(rel), "stat": stat})
            units.append({"dataset": spec.name, "source": source, "group": group, "items": items})
        if unmatched:
            logger.warning("dataset %r: group_regex matched %d of %d inputs; the others use their file/folder "
                           "as group", spec.name, len(groups) - unmatched, len(groups))
        logger.info("dataset %r: %d input file(s) in %d unit(s)", spec.name, len(files), len(groups))
    return units


def _key_base(dataset: str, rel: str, frame: int | None) -> str:
    stem = str(PurePosixPath(rel).with_suffix("")) if PurePosixPath(rel).suffix else rel
    return f"{dataset}/{stem}" + ("" if frame is None else f"_f{frame}")


def _iter_frames(kind: str, path: Path, stride: int) -> Iterator[tuple[int | None, np.ndarray]]:
    """Decoded frames of one file, streamed (raises :class:`SourceError` where decoding stops)."""
    if kind in ("images", "image_sets"):
        yield None, read_image(path)
    elif kind == "video":
        yield from iter_video_frames(path, stride)
    elif kind == "dicom":
        yield from iter_dicom_frames(path, stride)
    else:
        raise ValueError(f"unknown kind {kind!r}")


def process_unit(settings: dict[str, dict[str, Any]], unit: dict[str, Any], options: PipelineOptions) -> list[Any]:
    """Worker: decode, curate and encode one unit; returns its events in order.

    Frames are curated as they are decoded, so only small encoded images (and,
    with the noise filter, 32x32 features) are held per unit, not raw frames.
    """
    ds = settings[unit["dataset"]]
    name, root, kind = unit["dataset"], Path(ds["root"]), ds["kind"]
    events: list[Any] = []
    frame_slots: list[int] = []  # positions in ``events`` of per-frame results
    features: list[np.ndarray] = []  # (1024,) per decoded frame, for the noise filter
    meta = dict(ds["metadata"])
    meta["group"] = unit["group"]
    for pos, item in enumerate(unit["items"]):
        if kind == "image_sets" and pos % ds["frame_stride"]:
            continue  # image sets honour an explicit frame_stride (default 1)
        try:
            for frame, arr in _iter_frames(kind, root / item["source"], ds["frame_stride"]):
                frame = pos if kind == "image_sets" else frame
                try:
                    gray = curation.to_gray_uint8(arr)  # (H, W) uint8
                except ValueError as bad:
                    events.append(Rejection(name, item["source"], frame, "not-an-image", str(bad)))
                    continue
                if ds["noise"] is not None:
                    features.append(curation.frame_features(gray))
                    frame_slots.append(len(events))
                events.append(candidate_from_array(
                    gray, options, dataset=name, source=item["source"], frame=frame,
                    key_base=_key_base(name, item["source"], None if kind == "image_sets" else frame),
                    paths=item["paths"], label_space=ds["label_space"], metadata=meta,
                    crop=ds["crop"], near=ds["near"], min_nonzero=ds["min_nonzero"],
                ))
        except SourceError as err:
            frame = pos if kind == "image_sets" else err.frame
            events.append(Rejection(name, item["source"], frame, err.reason, err.detail))
    if ds["noise"] is not None and len(features) > 2:
        flags = curation.noise_flags(np.stack(features), **ds["noise"])
        for slot, noisy in zip(frame_slots, flags):
            ev = events[slot]
            if noisy and isinstance(ev, Candidate):
                events[slot] = Rejection(name, ev.source, ev.frame, "noise-frame",
                                         "outside the majority DBSCAN cluster of its video / image set")
    return events


def build_shards(manifest_path: str | Path, out_dir: str | Path, workers: int = 1,
                 image_format: str | None = None) -> dict[str, Any]:
    """Build shards from a manifest YAML.

    Args:
        manifest_path: manifest file (see ``docs/data.md``).
        out_dir: output folder; an earlier partial build there is resumed.
        workers: decode/curate processes; the output bytes do not depend on it.
        image_format: ``"png"``, ``"jpeg"`` or ``"raw-zstd"``, overriding the manifest's ``format``.

    Returns:
        The ``index.json`` document.

    Raises:
        ManifestError: invalid manifest (raised before any input is decoded).
        ValueError: an unknown ``image_format``.
    """
    if image_format is not None and image_format not in ("png", "jpeg", "raw-zstd"):
        raise ValueError(f"unknown image format {image_format!r}; expected png, jpeg or raw-zstd")
    manifest = load_manifest(manifest_path)
    onto = load_ontology(manifest.ontology)
    units = make_units(manifest)
    options = PipelineOptions(
        image_size=manifest.image_size, image_format=image_format or manifest.image_format, jpeg_quality=manifest.jpeg_quality,
        shard_max_count=manifest.shard_max_count, shard_max_bytes=manifest.shard_max_bytes,
        hash_kind=manifest.hash_kind, hash_size=manifest.hash_size, near_scope=manifest.near_scope,
        ontology_hash=onto.hash,
    )
    settings = {spec.name: _settings(spec) for spec in manifest.datasets}
    fingerprint = {"settings": settings, "ontology": onto.hash}
    process = functools.partial(process_unit, settings)
    return run_pipeline(out_dir, units, process, options, fingerprint, workers=max(1, int(workers)),
                        dataset_names=[s.name for s in manifest.datasets])
