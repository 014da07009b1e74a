"""Find the labeled items of a dataset root in the format users already have: one scanner per layout.

Each ``scan_<kind>(root, opts, skips) -> Scanned`` function reads one layout; fine-tuning tasks name
theirs in the task registry (:mod:`echocare.tasks.registry`) and :func:`scan_dataset` runs it.

=========================  ==========================================================================
scanner                    accepted layouts (``root`` = ``data.root``)
=========================  ==========================================================================
scan_classification        ``root/<class>/**/*.png`` class folders (``data.exclude`` globs left out), or a
                           CSV ``image,label[,group]``
                           (``root`` is the CSV, or ``data.csv``, or ``root/labels.csv``)
scan_segmentation          ``root/images/X.*`` + ``root/masks/X.*`` (same stem; mask values = class ids)
scan_detection             COCO JSON (``data.annotations`` or ``root/annotations.json``); files under
                           ``root`` or ``root/images``
scan_landmarks             CSV ``image,x1,y1,x2,y2,...`` (empty cell = landmark not visible)
scan_regression            CSV ``image|video,value`` (frame folders / videos give temporal inputs)
scan_video                 class folders of videos (.mp4/.avi/..., PyAV) or of frame folders, or a CSV
                           ``video,label[,group]``
=========================  ==========================================================================

Every file is checked here (image headers verified, masks decoded, videos' frames counted) so bad
inputs are reported and counted before training, not discovered mid-run.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from echocare.data.labeled.media import check_mask_values, count_frames, load_mask
from echocare.data.labeled.records import (
    IMAGE_SUFFIXES,
    PATH_COLUMNS,
    Record,
    SkipReport,
    class_folders,
    class_index,
    is_video_file,
    label_table,
    load_coco,
    numeric_table,
    pick_column,
    read_csv,
    resolve_item,
)
from echocare.data.sources import SourceError
from echocare.errors import DataError

logger = logging.getLogger(__name__)

__all__ = ["LabeledSet", "ScanOptions", "Scanned", "Scanner", "scan_classification", "scan_dataset", "scan_detection",
           "scan_landmarks", "scan_regression", "scan_segmentation", "scan_video"]


@dataclass
class ScanOptions:
    """Format options (mirrors the ``data.*`` config keys of the same names)."""

    csv: str | None = None
    annotations: str | None = None
    images_dir: str = "images"
    masks_dir: str = "masks"
    path_column: str | None = None
    label_column: str = "label"
    group_column: str | None = None
    value_columns: list[str] = field(default_factory=list)
    classes: list[str] = field(default_factory=list)
    num_classes: int | None = None
    positive_class: str | None = None
    clip_len: int = 8
    clip_stride: int | None = None
    verify: bool = True
    exclude: list[str] = field(default_factory=list)


@dataclass
class LabeledSet:
    """A scanned dataset.

    Attributes:
        task: Task name.
        root: Dataset root.
        records: Usable items, sorted by path.
        class_names: Class names (classification, video, detection; segmentation incl. background).
        num_outputs: Classes / landmarks / regressed values the head must produce.
        temporal: Items are frame sequences.
        skips: Everything left out, with reasons.
    """

    task: str
    root: Path
    records: list[Record]
    class_names: list[str]
    num_outputs: int
    temporal: bool
    skips: SkipReport


def _csv_path(root: Path, opts: ScanOptions, default: str) -> Path | None:
    if root.is_file() and root.suffix.lower() in (".csv", ".tsv"):
        return root
    if opts.csv:
        p = Path(opts.csv)
        return p if p.is_absolute() else root / p
    return root / default if (root / default).is_file() else None


def _verify_images(records: list[Record], skips: SkipReport) -> list[Record]:
    from PIL import Image

    kept = []
    for r in records:
        try:
            with Image.open(r.file) as im:
                im.verify()
        except Exception as err:  # noqa: BLE001 - PIL raises many types for corrupt files
            skips.add(r.path, "corrupt-image", f"{type(err).__name__}: {err}")
            continue
        kept.append(r)
    return kept


def _classification(root: Path, opts: ScanOptions, skips: SkipReport, video: bool):
    csv = _csv_path(root, opts, "labels.csv")
    if csv is not None:
        base = csv.parent if root.is_file() else root
        rows = label_table(csv, base, opts.path_column, opts.label_column, opts.group_column, skips, video)
        names = class_index([r[1] for r in rows], opts.classes)
        pairs = [(p, lab, g) for p, lab, g in rows]
    else:
        base = root
        found, folder_names = class_folders(root, video, skips, opts.exclude)
        names = list(opts.classes) if opts.classes else folder_names
        pairs = [(p, lab, None) for p, lab in found]
    names = _positive_last(names, opts)
    index = {n: i for i, n in enumerate(names)}
    records = []
    for path, label, group in pairs:
        if label not in index:
            skips.add(path, "unknown-class", f"label {label!r} not in data.classes {names}")
            continue
        records.append(Record(path, index[label], str(base), group=group))
    return base, records, names


def _positive_last(names: list[str], opts: ScanOptions) -> list[str]:
    """Class order with the positive class of a binary task at index 1 (``data.positive_class``), logged.

    Raises:
        DataError: ``positive_class`` is set for a task that does not have exactly two classes, is not one of
            them, or contradicts an explicit ``data.classes`` order.
    """
    positive = opts.positive_class
    if len(names) != 2:
        if positive is not None:
            raise DataError(f"data.positive_class={positive!r} is for binary tasks; the data has {len(names)} "
                            f"classes {names}")
        return names
    if positive is None:
        logger.info("binary classification: positive class %r (index 1; the second in label order - set "
                    "data.positive_class to choose), negative %r", names[1], names[0])
        return names
    if positive not in names:
        raise DataError(f"data.positive_class={positive!r} is not one of the classes {names}")
    if opts.classes and list(opts.classes)[1] != positive:
        raise DataError(f"data.positive_class={positive!r} contradicts data.classes={list(opts.classes)} "
                        "(the positive class is the second); change one of them")
    ordered = [n for n in names if n != positive] + [positive]
    logger.info("binary classification: positive class %r (data.positive_class, index 1), negative %r",
                positive, ordered[0])
    return ordered


def _segmentation(root: Path, opts: ScanOptions, skips: SkipReport):
    images, masks = root / opts.images_dir, root / opts.masks_dir
    for d in (images, masks):
        if not d.is_dir():
            raise FileNotFoundError(f"segmentation data needs {images} and {masks} folders; {d} is missing")
    mask_by_stem: dict[str, Path] = {}
    for m in sorted(masks.rglob("*")):
        if m.is_file() and m.suffix.lower() in IMAGE_SUFFIXES:
            mask_by_stem[m.relative_to(masks).with_suffix("").as_posix()] = m
    records = []
    for img in sorted(images.rglob("*")):
        if not img.is_file():
            continue
        rel = img.relative_to(root).as_posix()
        if img.suffix.lower() not in IMAGE_SUFFIXES:
            skips.add(rel, "unsupported-suffix")
            continue
        stem = img.relative_to(images).with_suffix("").as_posix()
        mask = mask_by_stem.pop(stem, None)
        if mask is None:
            skips.add(rel, "no-mask", f"no {opts.masks_dir}/{stem}.* file")
            continue
        records.append(Record(rel, mask.relative_to(root).as_posix(), str(root)))
    for stem, m in mask_by_stem.items():
        skips.add(m.relative_to(root).as_posix(), "mask-without-image")
    return records


def _check_masks(records: list[Record], num_classes: int | None, skips: SkipReport) -> tuple[list[Record], int]:
    kept, values = [], {}
    for r in records:
        try:
            mask = load_mask(Path(r.root) / r.target, map_binary=False)
        except SourceError as err:
            skips.add(r.target, err.reason, err.detail)
            continue
        values[r.target] = {int(v) for v in np.unique(mask)}
        kept.append(r)
    return kept, check_mask_values(values, num_classes)  # 0/255 binary -> 0/1; bad values: one error


def _videos(records: list[Record], opts: ScanOptions, skips: SkipReport, clips: bool) -> list[Record]:
    """Count frames; for video classification expand each video into its clips of adjacent frames."""
    out = []
    step = opts.clip_stride or opts.clip_len
    for r in records:
        try:
            n = count_frames(r.file)
        except SourceError as err:
            skips.add(r.path, err.reason, err.detail)
            continue
        if n < opts.clip_len:
            skips.add(r.path, "video-shorter-than-clip", f"{n} frames < data.clip_len={opts.clip_len}")
            continue
        if not clips:
            out.append(Record(r.path, r.target, r.root, r.group, {"num_frames": n}))
            continue
        for start in range(0, n - opts.clip_len + 1, step):
            out.append(Record(r.path, r.target, r.root, r.group, {"num_frames": n, "start": start}))
    return out


@dataclass
class Scanned:
    """What a per-task scanner found (before the generic checks of :func:`scan_dataset`).

    Attributes:
        root: Base folder the records' paths are relative to.
        records: Items found.
        class_names: Output names (classes, landmarks, regressed columns).
        num_outputs: Classes / landmarks / values the head must produce.
        temporal: Items are frame sequences (image headers are then not verified).
        verified: The scanner already verified the image files (it needed them before its own checks).
    """

    root: Path
    records: list[Record]
    class_names: list[str]
    num_outputs: int
    temporal: bool = False
    verified: bool = False


Scanner = Callable[[Path, ScanOptions, SkipReport], Scanned]


def scan_classification(root: Path, opts: ScanOptions, skips: SkipReport) -> Scanned:
    """Class folders of images, or a CSV ``image,label[,group]``."""
    base, records, names = _classification(root, opts, skips, video=False)
    return Scanned(base, records, names, len(names))


def scan_video(root: Path, opts: ScanOptions, skips: SkipReport) -> Scanned:
    """Class folders (or a CSV) of videos / frame folders, expanded into clips of ``clip_len`` frames."""
    base, records, names = _classification(root, opts, skips, video=True)
    return Scanned(base, _videos(records, opts, skips, clips=True), names, len(names), temporal=True)


def scan_segmentation(root: Path, opts: ScanOptions, skips: SkipReport) -> Scanned:
    """``images/`` + ``masks/`` with the same stems; masks decoded and range-checked."""
    records = _segmentation(root, opts, skips)
    if opts.verify:
        records = _verify_images(records, skips)
    records, num = _check_masks(records, opts.num_classes, skips)
    names = list(opts.classes) if opts.classes else ["background"] + [str(c) for c in range(1, num)]
    if len(names) != num:
        raise DataError(f"data.classes names {len(names)} classes but there are {num} (incl. background)")
    return Scanned(root, records, names, num, verified=True)


def scan_detection(root: Path, opts: ScanOptions, skips: SkipReport) -> Scanned:
    """A COCO JSON (``data.annotations`` or ``root/annotations.json``)."""
    ann = Path(opts.annotations) if opts.annotations else root / "annotations.json"
    ann = ann if ann.is_absolute() else root / ann
    if not ann.is_file():
        raise FileNotFoundError(f"detection needs a COCO JSON: {ann} not found (set data.annotations)")
    records, names = load_coco(ann, root, skips)
    return Scanned(root, records, names, len(names))


def _value_csv(root: Path, opts: ScanOptions, skips: SkipReport, what: str, allow_nan: bool, allow_video: bool):
    csv = _csv_path(root, opts, "labels.csv")
    if csv is None:
        raise FileNotFoundError(f"{what} needs a CSV: {root} is not a .csv and has no labels.csv (set data.csv)")
    base = csv.parent if root.is_file() else root
    video = allow_video and _first_is_video(csv, base, opts)
    records, cols = numeric_table(csv, base, opts.path_column, opts.group_column, opts.value_columns or None,
                                  skips, video=video, allow_nan=allow_nan)
    return csv, base, records, cols, video


def scan_landmarks(root: Path, opts: ScanOptions, skips: SkipReport) -> Scanned:
    """A CSV ``image,x1,y1,x2,y2,...`` (an empty cell = landmark not visible)."""
    csv, base, records, cols, _ = _value_csv(root, opts, skips, "landmarks", allow_nan=True, allow_video=False)
    if len(cols) % 2:
        raise DataError(f"{csv}: landmark CSV needs x,y column pairs, got {len(cols)} value columns {cols}")
    records = [Record(r.path, [[r.target[i], r.target[i + 1]] for i in range(0, len(r.target), 2)],
                      r.root, r.group) for r in records]
    names = [re.sub(r"^[xX][_ ]?|[_ ]?[xX]$", "", c) or str(i) for i, c in enumerate(cols[0::2])]
    return Scanned(base, records, names, len(cols) // 2)


def scan_regression(root: Path, opts: ScanOptions, skips: SkipReport) -> Scanned:
    """A CSV ``image|video,value[,...]``; videos / frame folders give temporal items."""
    _, base, records, cols, video = _value_csv(root, opts, skips, "regression", allow_nan=False, allow_video=True)
    if video:
        return Scanned(base, _videos(records, opts, skips, clips=False), cols, len(cols), temporal=True)
    return Scanned(base, records, cols, len(cols))


def scan_dataset(scanner: Scanner, root: str | Path, opts: ScanOptions | None = None, name: str = "") -> LabeledSet:
    """Scan ``root`` with a per-task ``scanner`` (e.g. :func:`scan_classification`), then check every file.

    Args:
        scanner: The task's scanner (a fine-tuning task names its own in the task registry).
        root: Dataset root (folder, or the CSV itself for CSV formats).
        opts: Format options.
        name: Task name recorded in the result and in messages.

    Raises:
        ValueError: unreadable annotation file, or no usable item at all.
        FileNotFoundError: ``root`` (or a required sub-folder / annotation file) is missing.
    """
    opts = opts or ScanOptions()
    root = Path(root).expanduser()
    if not root.exists():
        raise FileNotFoundError(f"data root {root} does not exist")
    skips = SkipReport()
    found = scanner(root, opts, skips)
    records = found.records
    if opts.verify and not found.temporal and not found.verified:
        records = _verify_images(records, skips)
    if not records:
        raise DataError(f"{found.root}: no usable {name or 'labeled'} items ({skips.count} skipped: "
                         f"{skips.by_reason()})")
    logger.info("%s data %s: %d items, %d outputs, %d skipped %s", name or "labeled", found.root, len(records),
                found.num_outputs, skips.count, skips.by_reason() or "")
    return LabeledSet(name, found.root, records, found.class_names, found.num_outputs, found.temporal, skips)


def _first_is_video(csv: Path, base: Path, opts: ScanOptions) -> bool:
    """Whether a regression CSV names videos / frame folders (decided by its first row)."""
    header, rows = read_csv(csv)
    col = pick_column(header, opts.path_column, PATH_COLUMNS, "image/video path", csv)
    for row in rows:
        if row.get(col):
            p = resolve_item(base, row[col], "images")
            return p.is_dir() or is_video_file(p)
    return False
