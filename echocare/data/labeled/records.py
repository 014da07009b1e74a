"""Records of labeled datasets: one annotated item (image, image+mask, video, ...) each, and the skip report.

A :class:`Record` points at a file (relative to the dataset root) and holds its target in the
file's *original* pixel coordinates; resizing happens when the item is loaded. Anything that
cannot become a record (unreadable file, unknown class, missing mask, malformed row) is added to
a :class:`SkipReport` with a reason — counted, logged and written next to the run — never dropped
silently.
"""

from __future__ import annotations

import csv
import json
import logging
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from echocare.data.sources import glob_regex
from echocare.errors import DataError

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".mpg", ".mpeg")
GROUP_COLUMNS = ("group", "patient", "patient_id", "video", "case", "subject")
PATH_COLUMNS = ("image", "video", "path", "file", "filename")


@dataclass
class Record:
    """One labeled item.

    Attributes:
        path: File (or frame folder) relative to ``root``, ``/`` separated.
        target: Task target in original pixels: class id (int), mask path (str), ``{"boxes", "labels"}``,
            landmark list ``[[x, y], ...]`` (NaN = not visible) or regression values ``[float, ...]``.
        root: Dataset root the path is relative to.
        group: Explicit split group from the annotation (CSV column), if any.
        extra: Format-specific details (e.g. ``num_frames`` and ``start`` of a video clip).
    """

    path: str
    target: Any
    root: str
    group: str | None = None
    extra: dict = field(default_factory=dict)

    @property
    def file(self) -> Path:
        """Absolute path of the item."""
        return Path(self.root) / self.path


class SkipReport:
    """Counted, logged list of inputs that were left out, with reasons."""

    def __init__(self) -> None:
        self.items: list[dict[str, str]] = []

    def add(self, source: str, reason: str, detail: str = "") -> None:
        """Record one skipped input (logged at WARNING)."""
        self.items.append({"source": source, "reason": reason, "detail": detail})
        logger.warning("skipping %s: %s%s", source, reason, f" ({detail})" if detail else "")

    @property
    def count(self) -> int:
        """Number of skipped inputs."""
        return len(self.items)

    def by_reason(self) -> dict[str, int]:
        """Skip counts per reason."""
        return dict(Counter(i["reason"] for i in self.items))

    def to_dict(self) -> dict[str, Any]:
        """JSON-able summary: count, counts by reason and every item."""
        return {"skipped": self.count, "by_reason": self.by_reason(), "items": self.items}


def _rel(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


def is_video_file(path: Path) -> bool:
    """Whether ``path`` has a video suffix."""
    return path.suffix.lower() in VIDEO_SUFFIXES


def frame_files(folder: Path) -> list[Path]:
    """Sorted image files of a frame folder (natural order of zero-padded names)."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    """Header and rows of a CSV file (``,`` or ``;`` or tab separated, sniffed).

    Raises:
        ValueError: the file has no header row.
    """
    text = path.read_text(encoding="utf-8-sig")
    try:
        dialect = csv.Sniffer().sniff(text.splitlines()[0] if text else ",", delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    reader = csv.DictReader(text.splitlines(), dialect=dialect)
    if not reader.fieldnames:
        raise DataError(f"{path}: CSV has no header row")
    header = [h.strip() for h in reader.fieldnames]
    rows = [{(k or "").strip(): (v or "").strip() for k, v in row.items()} for row in reader]
    return header, rows


def pick_column(header: list[str], wanted: str | None, candidates: tuple[str, ...], what: str,
                path: Path, required: bool = True) -> str | None:
    """The column to use: ``wanted`` if given (must exist), else the first candidate present."""
    lower = {h.lower(): h for h in header}
    if wanted:
        if wanted not in header and wanted.lower() not in lower:
            raise DataError(f"{path}: no {what} column {wanted!r}; columns are {header}")
        return wanted if wanted in header else lower[wanted.lower()]
    for c in candidates:
        if c in lower:
            return lower[c]
    if required:
        raise DataError(f"{path}: no {what} column (expected one of {list(candidates)}); columns are {header}")
    return None


def resolve_item(root: Path, value: str, images_dir: str | None = None) -> Path:
    """The file a CSV/JSON entry names: absolute, relative to ``root``, or to ``root/images_dir``."""
    p = Path(value)
    if p.is_absolute():
        return p
    if images_dir and not (root / p).exists() and (root / images_dir / p).exists():
        return root / images_dir / p
    return root / p


def media_ok(path: Path, video: bool) -> str | None:
    """Why ``path`` cannot be an item (missing, empty, wrong kind), or None when it looks usable."""
    if video:
        if path.is_dir():
            return None if frame_files(path) else "empty-frame-folder"
        if not path.is_file():
            return "missing-file"
        return None if is_video_file(path) else "not-a-video"
    if not path.is_file():
        return "missing-file"
    if path.stat().st_size == 0:
        return "empty-file"
    return None if path.suffix.lower() in IMAGE_SUFFIXES else "unsupported-suffix"


_MASK_STEM = re.compile(r"[_-]mask(?:[_-]?\d+)?$", re.IGNORECASE)


def excluded(rel: str, patterns: Sequence[str]) -> bool:
    """Whether a root-relative path matches one of the ``data.exclude`` globs.

    The globs are the manifests' (``**`` = any number of folders, ``*`` stays within one name, case-insensitive);
    a glob without ``/`` is matched against the file name, in any folder.
    """
    name = rel.rsplit("/", 1)[-1]
    return any(glob_regex(p).match(rel if "/" in p else name) for p in patterns)


def class_folders(root: Path, video: bool, skips: SkipReport,
                  exclude: Sequence[str] = ()) -> tuple[list[tuple[str, str]], list[str]]:
    """``(relpath, class name)`` pairs of a class-folder tree: ``root/<class>/**/<item>``.

    For images an item is an image file; for videos a video file or a folder of frame images
    (a folder containing images directly is one video). Items matching an ``exclude`` glob are left out (counted
    in one log line); image files named like masks (``X_mask.png``, BUSI's layout) that are still in are warned
    about, since they would be read as images of their class.
    """
    if not root.is_dir():
        raise FileNotFoundError(f"data.root {root} is not a directory")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DataError(f"{root}: no class folders found (expected ROOT/<class>/<files>)")
    pairs: list[tuple[str, str]] = []
    n_excluded, masks = 0, []
    for name in classes:
        folder = root / name
        if video:
            items = [p for p in sorted(folder.rglob("*")) if (p.is_file() and is_video_file(p))
                     or (p.is_dir() and frame_files(p))]
        else:
            items = [p for p in sorted(folder.rglob("*")) if p.is_file()]
        for p in items:
            if exclude and excluded(_rel(p, root), exclude):
                n_excluded += 1
                continue
            reason = media_ok(p, video)
            if reason:
                skips.add(_rel(p, root), reason)
                continue
            if not video and _MASK_STEM.search(p.stem):
                masks.append(_rel(p, root))
            pairs.append((_rel(p, root), name))
    if n_excluded:
        logger.info("%s: data.exclude %s left out %d file(s)", root, list(exclude), n_excluded)
    if masks:
        logger.warning("%s: %d file(s) in the class folders are named like masks (e.g. %s) and are read as images of "
                       "their class; if they are masks, leave them out with data.exclude: ['*_mask*']", root,
                       len(masks), masks[0])
    return pairs, classes


def label_table(csv_path: Path, root: Path, path_column: str | None, label_column: str, group_column: str | None,
                skips: SkipReport, video: bool = False) -> list[tuple[str, str, str | None]]:
    """``(relpath, label string, group)`` rows of a ``path,label[,group]`` CSV; bad rows are skipped."""
    header, rows = read_csv(csv_path)
    pcol = pick_column(header, path_column, PATH_COLUMNS, "image/video path", csv_path)
    lcol = pick_column(header, label_column, (label_column,), "label", csv_path)
    gcol = pick_column(header, group_column, GROUP_COLUMNS, "group", csv_path, required=bool(group_column))
    if gcol == pcol:
        gcol = None
    out = []
    for n, row in enumerate(rows, start=2):
        where = f"{csv_path.name}:{n}"
        if not row.get(pcol) or row.get(lcol, "") == "":
            skips.add(where, "empty-field", f"{pcol}={row.get(pcol)!r} {lcol}={row.get(lcol)!r}")
            continue
        file = resolve_item(root, row[pcol], "images")
        reason = media_ok(file, video)
        if reason:
            skips.add(row[pcol], reason, where)
            continue
        rel = file.relative_to(root).as_posix() if file.is_relative_to(root) else str(file)
        out.append((rel, row[lcol], row.get(gcol) if gcol else None))
    return out


def class_index(names: list[str], given: list[str]) -> list[str]:
    """Class order: ``given`` (data.classes) when set, else the sorted names (numerically if all ints)."""
    if given:
        return list(given)
    unique = sorted(set(names))
    if unique and all(n.lstrip("-").isdigit() for n in unique):
        unique = sorted(unique, key=int)
    return unique


def load_coco(path: Path, root: Path, skips: SkipReport) -> tuple[list[Record], list[str]]:
    """Detection records from a COCO JSON (``images``, ``annotations``, ``categories``; bbox = x, y, w, h).

    Category ids map to contiguous labels 0..K-1 in id order. Crowd, degenerate and out-of-image
    boxes and annotations of unknown images/categories are skipped (reported). Images without
    boxes stay (negatives).
    """
    try:
        coco = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise DataError(f"{path}: not a readable COCO JSON file: {err}") from err
    for key in ("images", "annotations", "categories"):
        if not isinstance(coco.get(key), list):
            raise DataError(f"{path}: COCO JSON lacks a '{key}' list")
    cats = sorted(coco["categories"], key=lambda c: c["id"])
    label_of = {c["id"]: i for i, c in enumerate(cats)}
    names = [str(c.get("name", c["id"])) for c in cats]
    images: dict[Any, dict] = {}
    for im in coco["images"]:
        file = resolve_item(root, str(im.get("file_name", "")), "images")
        reason = media_ok(file, video=False)
        if reason:
            skips.add(str(im.get("file_name")), reason, f"COCO image id {im.get('id')}")
            continue
        images[im["id"]] = {"file": file, "w": im.get("width"), "h": im.get("height"), "boxes": [], "labels": []}
    for ann in coco["annotations"]:
        where = f"annotation {ann.get('id')}"
        im = images.get(ann.get("image_id"))
        if im is None:
            skips.add(where, "unknown-or-skipped-image", f"image_id {ann.get('image_id')}")
            continue
        if ann.get("iscrowd"):
            skips.add(where, "crowd-annotation")
            continue
        if ann.get("category_id") not in label_of:
            skips.add(where, "unknown-category", f"category_id {ann.get('category_id')}")
            continue
        bbox = ann.get("bbox")
        if not (isinstance(bbox, list) and len(bbox) == 4) or bbox[2] <= 0 or bbox[3] <= 0:
            skips.add(where, "bad-bbox", f"bbox {bbox!r}")
            continue
        x, y, w, h = (float(v) for v in bbox)
        if im["w"] and im["h"] and (x < -1 or y < -1 or x + w > im["w"] + 1 or y + h > im["h"] + 1):
            skips.add(where, "bbox-outside-image", f"bbox {bbox!r} in {im['w']}x{im['h']}")
            continue
        im["boxes"].append([x, y, x + w, y + h])
        im["labels"].append(label_of[ann["category_id"]])
    records = []
    for im in images.values():
        rel = im["file"].relative_to(root).as_posix() if im["file"].is_relative_to(root) else str(im["file"])
        records.append(Record(rel, {"boxes": im["boxes"], "labels": im["labels"]}, str(root)))
    records.sort(key=lambda r: r.path)
    return records, names


def numeric_table(csv_path: Path, root: Path, path_column: str | None, group_column: str | None,
                  value_columns: list[str] | None, skips: SkipReport, video: bool,
                  allow_nan: bool) -> tuple[list[Record], list[str]]:
    """Records whose targets are numbers: ``path, v1, v2, ...`` (landmarks: x1,y1,...; regression: value).

    Args:
        value_columns: Columns holding the numbers; None = every column except path and group.
        allow_nan: Empty cells become NaN (missing landmark) instead of skipping the row.

    Returns:
        ``(records, value column names)``.
    """
    header, rows = read_csv(csv_path)
    pcol = pick_column(header, path_column, PATH_COLUMNS, "image/video path", csv_path)
    gcol = pick_column(header, group_column, GROUP_COLUMNS, "group", csv_path, required=bool(group_column))
    if value_columns:
        for c in value_columns:
            pick_column(header, c, (c,), "value", csv_path)
        cols = list(value_columns)
    else:
        cols = [h for h in header if h not in (pcol, gcol)]
    if not cols:
        raise DataError(f"{csv_path}: no value columns besides {pcol!r}")
    records = []
    for n, row in enumerate(rows, start=2):
        where = f"{csv_path.name}:{n}"
        file = resolve_item(root, row.get(pcol, ""), "images")
        reason = "empty-field" if not row.get(pcol) else media_ok(file, video)
        if reason:
            skips.add(row.get(pcol) or where, reason, where)
            continue
        try:
            values = [float(row[c]) if row.get(c, "") != "" else float("nan") for c in cols]
        except ValueError as err:
            skips.add(row[pcol], "not-a-number", f"{where}: {err}")
            continue
        if not allow_nan and any(v != v for v in values):
            skips.add(row[pcol], "missing-value", where)
            continue
        rel = file.relative_to(root).as_posix() if file.is_relative_to(root) else str(file)
        records.append(Record(rel, values, str(root), group=row.get(gcol) if gcol else None))
    return records, cols
