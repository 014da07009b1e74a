"""Find the labeled items of a dataset root in the format users already have, per task.

=========================  ==========================================================================
task                       accepted layouts (``root`` = ``data.root``)
=========================  ==========================================================================
classification             ``root/<class>/**/*.png`` class folders, or a CSV ``image,label[,group]``
                           (``root`` is the CSV, or ``data.csv``, or ``root/labels.csv``)
segmentation               ``root/images/X.*`` + ``root/masks/X.*`` (same stem; mask values = class ids)
detection                  COCO JSON (``data.annotations`` or ``root/annotations.json``); files under
                           ``root`` or ``root/images``
landmarks                  CSV ``image,x1,y1,x2,y2,...`` (empty cell = landmark not visible)
regression                 CSV ``image|video,value`` (frame folders / videos give temporal inputs)
video                      class folders of videos (.mp4/.avi/..., PyAV) or of frame folders, or a CSV
                           ``video,label[,group]``
=========================  ==========================================================================

Every file is checked here (image headers verified, masks decoded, videos' frames counted) so bad
inputs are reported and counted before training, not discovered mid-run.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from echocare.data.labeled.media import check_mask_values, count_frames, load_mask
from echocare.data.labeled.records import (
    IMAGE_SUFFIXES,
    Record,
    SkipReport,
    class_folders,
    class_index,
    label_table,
    load_coco,
    numeric_table,
)
from echocare.data.sources import SourceError

logger = logging.getLogger(__name__)

TASKS = ("classification", "segmentation", "detection", "landmarks", "regression", "video")

__all__ = ["TASKS", "LabeledSet", "ScanOptions", "scan_dataset"]


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
    clip_len: int = 8
    clip_stride: int | None = None
    verify: bool = True


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
        found, folder_names = class_folders(root, video, skips)
        names = list(opts.classes) if opts.classes else folder_names
        pairs = [(p, lab, None) for p, lab in found]
    index = {n: i for i, n in enumerate(names)}
    records = []
    for path, label, group in pairs:
        if label not in index:
            skips.add(path, "unknown-class", f"label {label!r} not in data.classes {names}")
            continue
        records.append(Record(path, index[label], str(base), group=group))
    return base, records, names


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


def scan_dataset(task: str, root: str | Path, opts: ScanOptions | None = None) -> LabeledSet:
    """Scan ``root`` for ``task`` (see the module table for layouts).

    Raises:
        ValueError: unknown task, unreadable annotation file, or no usable item at all.
        FileNotFoundError: ``root`` (or a required sub-folder / annotation file) is missing.
    """
    opts = opts or ScanOptions()
    root = Path(root).expanduser()
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose from {list(TASKS)}")
    if not root.exists():
        raise FileNotFoundError(f"data root {root} does not exist")
    skips = SkipReport()
    temporal = False
    if task in ("classification", "video"):
        root, records, names = _classification(root, opts, skips, video=task == "video")
        num = len(names)
        if task == "video":
            records, temporal = _videos(records, opts, skips, clips=True), True
    elif task == "segmentation":
        records = _segmentation(root, opts, skips)
        names = []
    elif task == "detection":
        ann = Path(opts.annotations) if opts.annotations else root / "annotations.json"
        ann = ann if ann.is_absolute() else root / ann
        if not ann.is_file():
            raise FileNotFoundError(f"detection needs a COCO JSON: {ann} not found (set data.annotations)")
        records, names = load_coco(ann, root, skips)
        num = len(names)
    else:
        csv = _csv_path(root, opts, "labels.csv")
        if csv is None:
            raise FileNotFoundError(f"{task} needs a CSV: {root} is not a .csv and has no labels.csv "
                                    "(set data.csv)")
        base = csv.parent if root.is_file() else root
        video = task == "regression" and _first_is_video(csv, base, opts)
        records, cols = numeric_table(csv, base, opts.path_column, opts.group_column, opts.value_columns or None,
                                      skips, video=video, allow_nan=task == "landmarks")
        root = base
        if task == "landmarks":
            if len(cols) % 2:
                raise ValueError(f"{csv}: landmark CSV needs x,y column pairs, got {len(cols)} value columns {cols}")
            records = [Record(r.path, [[r.target[i], r.target[i + 1]] for i in range(0, len(r.target), 2)],
                              r.root, r.group) for r in records]
            names = [re.sub(r"^[xX][_ ]?|[_ ]?[xX]$", "", c) or str(i) for i, c in enumerate(cols[0::2])]
            num = len(cols) // 2
        else:
            names, num = cols, len(cols)
            if video:
                records, temporal = _videos(records, opts, skips, clips=False), True
    if opts.verify and not temporal:
        records = _verify_images(records, skips)
    if task == "segmentation":
        records, num = _check_masks(records, opts.num_classes, skips)
        names = list(opts.classes) if opts.classes else ["background"] + [str(c) for c in range(1, num)]
        if len(names) != num:
            raise ValueError(f"data.classes names {len(names)} classes but there are {num} (incl. background)")
    if not records:
        raise ValueError(f"{root}: no usable {task} items ({skips.count} skipped: {skips.by_reason()})")
    logger.info("%s data %s: %d items, %d outputs, %d skipped %s", task, root, len(records), num, skips.count,
                skips.by_reason() or "")
    return LabeledSet(task, root, records, names, num, temporal, skips)


def _first_is_video(csv: Path, base: Path, opts: ScanOptions) -> bool:
    """Whether a regression CSV names videos / frame folders (decided by its first row)."""
    from echocare.data.labeled.records import PATH_COLUMNS, is_video_file, pick_column, read_csv, resolve_item

    header, rows = read_csv(csv)
    col = pick_column(header, opts.path_column, PATH_COLUMNS, "image/video path", csv)
    for row in rows:
        if row.get(col):
            p = resolve_item(base, row[col], "images")
            return p.is_dir() or is_video_file(p)
    return False
