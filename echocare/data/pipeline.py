"""The ordered build pipeline shared by ``shards build`` and ``shards phantom``.

Work is a list of *units* (one input file, one image-set folder, one phantom
image). ``process(unit, options)`` runs in worker processes and returns the
unit's *events* in order: :class:`Candidate` samples (already curated, resized
and encoded) or :class:`Rejection` rows. The main process consumes events in
unit order, which makes everything that follows deterministic whatever the
number of workers: key assignment, exact-duplicate removal (always on, within
and across datasets), near-duplicate removal, shard cutting and the report.

Resume rule: when a shard is finished, ``.progress/shard-NNNNNN.json`` is
written atomically with the build fingerprint, the shard's name / size /
sha256, the position in the event stream where the next shard starts and the
dedup state of its samples. On a rerun with the same fingerprint (same manifest,
options and input files by path, size and mtime), the longest prefix of shards
whose progress file matches and whose file still has the recorded size and
sha256 is kept untouched; their inputs are not decoded again and the build
continues from the recorded position. Anything else is rebuilt.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import multiprocessing as mp
import re
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from echocare.data import curation
from echocare.data.writer import (
    SHARD_PATTERN,
    IndexStats,
    Sample,
    ShardRecord,
    ShardWriter,
    encode_image,
    list_shard_files,
    make_index,
    sha256_file,
    write_json_atomic,
    write_report,
)

logger = logging.getLogger(__name__)

PROGRESS_DIR = ".progress"
_KEY_BAD = re.compile(r"[^A-Za-z0-9_/-]+")


@dataclass
class PipelineOptions:
    """Options every unit processor and the main loop need (plain values, picklable)."""

    image_size: int = 256
    image_format: str = "png"
    jpeg_quality: int = 95
    shard_max_count: int = 10_000
    shard_max_bytes: int = 1 << 30
    min_nonzero_pixels: int = 1000
    hash_kind: str = "phash"  # "phash" | "dhash"
    hash_size: int = 8
    near_scope: str = "dataset"  # "dataset" | "global"
    ontology_hash: str = ""


@dataclass
class Rejection:
    """One rejected input (a line of ``build_report.jsonl``)."""

    dataset: str
    source: str
    frame: int | None
    reason: str
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return asdict(self)


@dataclass
class Candidate:
    """A curated, encoded image waiting for the global dedup pass."""

    key_base: str
    dataset: str
    source: str
    frame: int | None
    paths: list[str]
    label_space: list[str] | None
    metadata: dict[str, Any]
    image: bytes
    ext: str
    pixel_hash: str
    perceptual: int
    near: float | None = None  # near-duplicate similarity threshold, None = off


def sanitize_key(text: str) -> str:
    """Webdataset-safe key: only ``[A-Za-z0-9_/-]``, no dots, no empty path parts."""
    parts = [(_KEY_BAD.sub("_", p).strip("_") or "_") for p in text.replace("\\", "/").split("/") if p]
    return "/".join(parts) or "_"


def candidate_from_array(
    img: np.ndarray,
    options: PipelineOptions,
    *,
    dataset: str,
    source: str,
    frame: int | None,
    key_base: str,
    paths: list[str],
    label_space: list[str] | None,
    metadata: dict[str, Any],
    crop: bool = False,
    near: float | None = None,
    min_nonzero: int | None = None,
) -> Candidate | Rejection:
    """Curate one decoded image: crop, pixel-count rule, hashes, resize, encode.

    The exact-duplicate hash is taken on the decoded grayscale array (before
    cropping); the perceptual hash on the final resized image.
    """
    gray = curation.to_gray_uint8(img)  # (H, W) uint8
    digest = curation.pixel_hash(gray)
    if crop:
        gray, _ = curation.crop_scan_area(gray)
    limit = options.min_nonzero_pixels if min_nonzero is None else min_nonzero
    valid = curation.count_nonzero(gray)
    if valid < limit:
        return Rejection(dataset, source, frame, "too-few-pixels", f"{valid} non-zero pixels < {limit}")
    out = curation.resize_shorter(gray, options.image_size)
    fn = curation.phash if options.hash_kind == "phash" else curation.dhash
    perceptual = fn(out, options.hash_size)
    data, ext = encode_image(out, options.image_format, options.jpeg_quality)
    return Candidate(sanitize_key(key_base), dataset, source, frame, list(paths),
                     None if label_space is None else list(label_space), dict(metadata), data, ext,
                     digest, perceptual, near)


def _run_unit(process: Callable[[Any, PipelineOptions], list[Any]], options: PipelineOptions,
              unit: dict[str, Any]) -> list[Any]:
    """Call ``process`` and turn any unexpected error into a reported rejection."""
    try:
        return process(unit, options)
    except Exception as err:  # noqa: BLE001 - a bad input must never stop the build
        logger.warning("unexpected error on %s/%s (reported as 'error'): %s: %s", unit.get("dataset"),
                       unit.get("source"), type(err).__name__, err, exc_info=logger.isEnabledFor(logging.DEBUG))
        return [Rejection(str(unit.get("dataset", "?")), str(unit.get("source", "?")), None, "error",
                          f"{type(err).__name__}: {err}")]


def _events(units: list[dict[str, Any]], start: int, process: Callable, options: PipelineOptions,
            workers: int) -> Iterator[tuple[int, list[Any]]]:
    """Yield ``(unit_index, events)`` in unit order, decoding in ``workers`` processes."""
    call = functools.partial(_run_unit, process, options)
    todo = units[start:]
    if workers <= 1 or len(todo) <= 1:
        for i, unit in enumerate(todo, start):
            yield i, call(unit)
        return
    methods = mp.get_all_start_methods()
    ctx = mp.get_context("fork" if "fork" in methods else "spawn")
    with ctx.Pool(workers) as pool:
        yield from enumerate(pool.imap(call, todo, chunksize=1), start)


def fingerprint_of(obj: Any) -> str:
    """sha256 of a canonical JSON encoding."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


@dataclass
class _State:
    """Global dedup and bookkeeping state, restorable from progress files."""

    exact: dict[str, str] = field(default_factory=dict)  # pixel hash -> kept key
    near: dict[str, curation.NearDuplicateIndex] = field(default_factory=dict)
    keys: set[str] = field(default_factory=set)
    stats: IndexStats = field(default_factory=IndexStats)
    report: list[dict[str, Any]] = field(default_factory=list)
    records: list[ShardRecord] = field(default_factory=list)
    pending_samples: list[dict[str, Any]] = field(default_factory=list)
    pending_report: list[dict[str, Any]] = field(default_factory=list)

    def near_index(self, scope: str, threshold: float, bits: int) -> curation.NearDuplicateIndex:
        name = f"{scope}@{threshold}"
        if name not in self.near:
            self.near[name] = curation.NearDuplicateIndex(threshold, bits)
        return self.near[name]

    def register(self, entry: dict[str, Any], bits: int) -> None:
        """Record a written sample (also used when restoring from progress files)."""
        self.exact[entry["hash"]] = entry["key"]
        self.keys.add(entry["key"])
        if entry.get("scope"):
            scope, threshold = entry["scope"].rsplit("@", 1)
            self.near_index(scope, float(threshold), bits).add(int(entry["phash"], 16), entry["key"])
        self.stats.add(entry["dataset"], entry["paths"])

    def reject(self, row: dict[str, Any]) -> None:
        self.report.append(row)
        self.pending_report.append(row)


def _restore(out: Path, fp: str, state: _State, bits: int) -> tuple[int, int]:
    """Load the valid prefix of finished shards; returns the resume position ``(unit, event)``."""
    position = (0, 0)
    for i, shard in enumerate(list_shard_files(out)):
        prog = out / PROGRESS_DIR / (SHARD_PATTERN.format(i) + ".json")
        if shard.name != SHARD_PATTERN.format(i) or not prog.is_file():
            break
        try:
            doc = json.loads(prog.read_text())
        except (OSError, ValueError):
            break
        rec = doc.get("record", {})
        if (doc.get("fingerprint") != fp or rec.get("name") != shard.name
                or shard.stat().st_size != rec.get("bytes") or sha256_file(shard) != rec.get("sha256")):
            break
        state.records.append(ShardRecord(**rec))
        for entry in doc["samples"]:
            state.register(entry, bits)
        state.report.extend(doc["rejections"])
        position = (int(doc["next_unit"]), int(doc["next_event"]))
    if state.records:
        logger.info("resuming: %d finished shard(s) kept, continuing at unit %d", len(state.records), position[0])
    return position


def run_pipeline(
    out_dir: str | Path,
    units: list[dict[str, Any]],
    process: Callable[[dict[str, Any], PipelineOptions], list[Any]],
    options: PipelineOptions,
    fingerprint: Any,
    workers: int = 1,
    dataset_names: list[str] | None = None,
) -> dict[str, Any]:
    """Run units through curation, dedup and the shard writer; write index and report.

    Args:
        out_dir: shard folder.
        units: JSON-able unit descriptions (each should name ``dataset`` and ``source``).
        process: module-level function ``(unit, options) -> [Candidate | Rejection, ...]``.
        options: pipeline options.
        fingerprint: JSON-able description of everything the output depends on
            besides ``units`` and ``options`` (used for resume).
        workers: decode processes (output bytes do not depend on it).
        dataset_names: datasets listed in the index even when none of their images survive.

    Returns:
        The ``index.json`` document.
    """
    out = Path(out_dir)
    (out / PROGRESS_DIR).mkdir(parents=True, exist_ok=True)
    fp = fingerprint_of({"fingerprint": fingerprint, "units": units, "options": asdict(options), "format": 1})
    bits = options.hash_size * options.hash_size
    state = _State()
    start_unit, start_event = _restore(out, fp, state, bits)
    position = [start_unit, start_event]

    def on_close(record: ShardRecord) -> None:
        state.records.append(record)
        doc = {"fingerprint": fp, "record": record.to_dict(), "next_unit": position[0],
               "next_event": position[1], "samples": state.pending_samples, "rejections": state.pending_report}
        write_json_atomic(out / PROGRESS_DIR / (record.name + ".json"), doc)
        state.pending_samples, state.pending_report = [], []

    writer = ShardWriter(out, options.shard_max_bytes, options.shard_max_count, len(state.records), on_close)
    for u, events in _events(units, start_unit, process, options, workers):
        for e, ev in enumerate(events):
            if u == start_unit and e < start_event:
                continue  # already inside a kept shard
            position[:] = [u, e]
            if isinstance(ev, Rejection):
                state.reject(ev.to_dict())
                continue
            _consume(ev, state, writer, options, bits)
        if (u + 1) % 1000 == 0:
            logger.info("processed %d / %d inputs", u + 1, len(units))
    position[:] = [len(units), 0]
    writer.close()  # the last progress file also takes the rejections after the last sample
    _remove_stale(out, len(state.records))
    for name in dataset_names or []:
        state.stats.datasets.setdefault(name, 0)
    rejected: dict[str, int] = {}
    for row in state.report:
        rejected[row["reason"]] = rejected.get(row["reason"], 0) + 1
    index = make_index(state.records, state.stats, options.ontology_hash, options.image_size,
                       options.image_format, rejected)
    write_json_atomic(out / "index.json", index)
    write_report(out / "build_report.jsonl", state.report)
    logger.info("%d samples in %d shard(s), %d rejected -> %s", index["total"], len(state.records),
                len(state.report), out)
    return index


def _consume(c: Candidate, state: _State, writer: ShardWriter, options: PipelineOptions, bits: int) -> None:
    """Global dedup decisions and writing for one candidate, in stream order."""
    dup = state.exact.get(c.pixel_hash)
    if dup is not None:
        state.reject(Rejection(c.dataset, c.source, c.frame, "duplicate", f"duplicate-of {dup}").to_dict())
        return
    scope = None
    if c.near is not None:
        scope_name = c.dataset if options.near_scope == "dataset" else "global"
        hit = state.near_index(scope_name, c.near, bits).query(c.perceptual)
        if hit is not None:
            row = Rejection(c.dataset, c.source, c.frame, "near-duplicate", f"near-duplicate-of {hit}")
            state.reject(row.to_dict())
            return
        scope = f"{scope_name}@{c.near}"
    key = c.key_base
    n = 2
    while key in state.keys:
        key = f"{c.key_base}_{n}"
        n += 1
    meta = {"dataset": c.dataset, "source": c.source, "frame": c.frame, "paths": c.paths,
            "label_space": c.label_space, "metadata": c.metadata}
    writer.write(Sample(key, c.image, c.ext, meta))
    entry = {"key": key, "dataset": c.dataset, "hash": c.pixel_hash, "phash": format(c.perceptual, "x"),
             "scope": scope, "paths": c.paths}
    state.register(entry, bits)
    state.pending_samples.append(entry)


def _remove_stale(out: Path, n_shards: int) -> None:
    """Delete shard / progress files numbered beyond this build's last shard."""
    for shard in list_shard_files(out):
        if int(shard.name[6:12]) >= n_shards:
            logger.info("removing stale %s", shard.name)
            shard.unlink()
    for tmp in sorted(out.glob("shard-*.tar.tmp")):  # left by an interrupted build
        tmp.unlink()
    for prog in sorted((out / PROGRESS_DIR).glob("shard-*.tar.json")):
        if int(prog.name[6:12]) >= n_shards:
            prog.unlink()
