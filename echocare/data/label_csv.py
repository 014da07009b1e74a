"""``label_csv`` manifest rule: per-file ontology paths read from a CSV column (finer labels passed through)."""

from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from echocare.typed import SchemaError, key_path

__all__ = ["LabelCsvDoc", "read_label_csv"]


@dataclass
class LabelCsvDoc:
    """``label_csv:`` mapping: per-file ontology paths from a CSV column (finer labels passed through)."""

    file: str
    label_column: str
    path_column: str = "path"
    separator: str = ";"


def read_label_csv(doc: LabelCsvDoc, root: Path, check_paths: Callable[[list[str], str], list[str]],
                   where: str) -> dict[str, list[str]]:
    """Per-file ontology paths from ``label_csv``: ``file`` (relative to the dataset root, or absolute) has a
    column ``path_column`` of root-relative file paths and ``label_column`` with one ontology path (or several
    joined by ``separator``); an empty cell leaves the file to the other rules. Every path is validated against
    the ontology here (``check_paths(paths, where)``), naming the CSV line."""
    path = Path(doc.file).expanduser()
    path = path if path.is_absolute() else root / path
    if not path.is_file():
        raise SchemaError(key_path(where, "file"), f"CSV {str(path)!r} does not exist")
    out: dict[str, list[str]] = {}
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in (doc.path_column, doc.label_column) if c not in (reader.fieldnames or [])]
        if missing:
            raise SchemaError(where, f"{path.name} has no column(s) {missing}; columns: {reader.fieldnames}")
        for n, row in enumerate(reader, start=2):  # line 1 is the header
            rel = PurePosixPath(str(row[doc.path_column]).strip().replace("\\", "/")).as_posix()
            cell = str(row[doc.label_column] or "").strip()
            if not cell or not rel or rel == ".":
                continue
            paths = check_paths([p.strip() for p in cell.split(doc.separator) if p.strip()],
                                f"{where} ({path.name} line {n})")
            if rel in out and out[rel] != paths:
                raise SchemaError(where, f"{path.name} line {n}: {rel!r} is listed twice with different labels")
            out[rel] = paths
    return out
