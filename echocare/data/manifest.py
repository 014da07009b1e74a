"""Dataset manifest (YAML) for ``echocare shards build``: parsing and validation.

Everything is validated before any file is decoded: unknown keys, duplicate
dataset names, missing roots, bad kinds / modalities / regexes and label paths
the ontology does not know are errors whose message names the culprit. See
``docs/data.md`` for the reference of every key.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

KINDS = ("images", "video", "dicom", "image_sets")
MODALITIES = {m.lower(): m for m in ("B-mode", "CEUS", "Doppler", "M-mode", "elastography")}
DEFAULT_INCLUDE = {
    "images": ["**/*.png", "**/*.jpg", "**/*.jpeg", "**/*.bmp", "**/*.tif", "**/*.tiff"],
    "image_sets": ["**/*.png", "**/*.jpg", "**/*.jpeg", "**/*.bmp", "**/*.tif", "**/*.tiff"],
    "video": ["**/*.mp4", "**/*.avi", "**/*.mov", "**/*.mkv", "**/*.webm", "**/*.wmv", "**/*.mpg", "**/*.mpeg"],
    "dicom": ["**/*.dcm", "**/*.dicom", "**/*.DCM"],
}
TOP_KEYS = {"ontology", "image_size", "min_nonzero_pixels", "format", "jpeg_quality", "shard_max_bytes",
            "shard_max_count", "dedup", "crop", "frame_stride", "noise_frames", "near_duplicates", "datasets"}
DATASET_KEYS = {"name", "root", "kind", "include", "exclude", "label", "labels", "label_space", "metadata",
                "group_regex", "frame_stride", "crop", "near_duplicates", "noise_frames", "min_nonzero_pixels",
                "label_csv"}
LABEL_CSV_KEYS = {"file", "path_column", "label_column", "separator"}
RULE_KEYS = {"folder", "regex", "path", "paths"}
METADATA_KEYS = {"modality", "scanning_mode", "device", "country", "licence", "extra"}
DEDUP_KEYS = {"exact", "hash", "hash_size", "near_scope"}
NOISE_KEYS = {"eps", "min_samples"}
_SIZE_RE = re.compile(r"^\s*([0-9.]+)\s*([kmgt]?i?b?)\s*$", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 1e3, "kb": 1e3, "kib": 1024, "m": 1e6, "mb": 1e6, "mib": 1024**2,
          "g": 1e9, "gb": 1e9, "gib": 1024**3, "t": 1e12, "tb": 1e12, "tib": 1024**4}


class ManifestError(ValueError):
    """The manifest is invalid; the message names the offending key, dataset or path."""


@dataclass
class LabelRule:
    """Assign ``paths`` to files under ``folder`` (relative to root) or matching ``regex``."""

    paths: list[str]
    folder: str | None = None
    regex: re.Pattern[str] | None = None

    def matches(self, rel: str) -> bool:
        """Whether the rule applies to a root-relative posix path."""
        if self.folder is not None:
            return rel == self.folder or rel.startswith(self.folder.rstrip("/") + "/")
        assert self.regex is not None
        return self.regex.search(rel) is not None


@dataclass
class NoiseFilter:
    """Video / image-set noise-frame filter settings (DBSCAN, seed 000)."""

    eps: float | None = None
    min_samples: int = 3


@dataclass
class DatasetSpec:
    """One validated ``datasets:`` entry (paths canonical, root absolute)."""

    name: str
    root: Path
    kind: str
    include: list[str]
    exclude: list[str] = field(default_factory=list)
    label: str | None = None
    rules: list[LabelRule] = field(default_factory=list)
    label_space: list[str] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    group_regex: re.Pattern[str] | None = None
    frame_stride: int = 10
    crop: bool = False
    near_duplicates: float | None = None
    noise: NoiseFilter | None = None
    min_nonzero_pixels: int = 1000
    csv_labels: dict[str, list[str]] = field(default_factory=dict)

    def paths_for(self, rel: str) -> list[str]:
        """Label paths of a root-relative file: its ``label_csv`` row, else the first matching rule, else
        ``label``, else none."""
        if rel in self.csv_labels:
            return list(self.csv_labels[rel])
        for rule in self.rules:
            if rule.matches(rel):
                return list(rule.paths)
        return [self.label] if self.label else []

    def group_for(self, rel: str, default: str) -> tuple[str, bool]:
        """Group key of a file via ``group_regex``; ``(default, False)`` when it does not match."""
        if self.group_regex is None:
            return default, True
        m = self.group_regex.search(rel)
        if m is None:
            return default, False
        if "group" in m.groupdict():
            return str(m.group("group")), True
        return str(m.group(1) if m.re.groups else m.group(0)), True


@dataclass
class Manifest:
    """A validated manifest."""

    path: Path
    datasets: list[DatasetSpec]
    ontology: str | None = None
    image_size: int = 256
    image_format: str = "png"
    jpeg_quality: int = 95
    shard_max_bytes: int = 1 << 30
    shard_max_count: int = 10_000
    hash_kind: str = "phash"
    hash_size: int = 8
    near_scope: str = "dataset"
    raw: dict[str, Any] = field(default_factory=dict)


def _err(where: str, msg: str) -> ManifestError:
    return ManifestError(f"{where}: {msg}")


def _check_keys(d: Any, allowed: set[str], where: str) -> dict[str, Any]:
    if not isinstance(d, dict):
        raise _err(where, f"expected a mapping, got {type(d).__name__}")
    for k in d:
        if k not in allowed:
            raise _err(where, f"unknown key {k!r}; allowed keys: {', '.join(sorted(allowed))}")
    return d


def parse_size(value: Any, where: str) -> int:
    """Bytes from an int or a string like ``"500MB"`` / ``"1GiB"``."""
    if isinstance(value, bool):
        raise _err(where, f"expected a size, got {value!r}")
    if isinstance(value, (int, float)):
        n = int(value)
    else:
        m = _SIZE_RE.match(str(value))
        if not m or m.group(2).lower() not in _UNITS:
            raise _err(where, f"cannot read size {value!r} (use bytes or e.g. '500MB', '1GiB')")
        n = int(float(m.group(1)) * _UNITS[m.group(2).lower()])
    if n <= 0:
        raise _err(where, f"size must be positive, got {value!r}")
    return n


def _int(value: Any, where: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise _err(where, f"expected an integer >= {minimum}, got {value!r}")
    return value


def _similarity(value: Any, where: str) -> float | None:
    if value is None or value is False:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < float(value) <= 1.0:
        raise _err(where, f"expected a similarity in (0, 1] (e.g. 0.95) or null, got {value!r}")
    return float(value)


def _noise(value: Any, where: str) -> NoiseFilter | None:
    if value is None or value is False:
        return None
    if value is True:
        return NoiseFilter()
    d = _check_keys(value, NOISE_KEYS, where)
    eps = d.get("eps")
    if eps is not None and (isinstance(eps, bool) or not isinstance(eps, (int, float)) or eps <= 0):
        raise _err(where + ".eps", f"expected a positive number or null, got {eps!r}")
    return NoiseFilter(None if eps is None else float(eps), _int(d.get("min_samples", 3), where + ".min_samples", 2))


def _crop(value: Any, where: str) -> bool:
    if value in (None, False, "none", "off"):
        return False
    if value in (True, "scan_area"):
        return True
    raise _err(where, f"expected 'scan_area' or 'none', got {value!r}")


def _regex(value: Any, where: str) -> re.Pattern[str]:
    try:
        return re.compile(str(value))
    except re.error as err:
        raise _err(where, f"invalid regular expression {value!r}: {err}") from None


def _globs(value: Any, where: str) -> list[str]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(g, str) and g for g in items):
        raise _err(where, f"expected a glob or a list of globs, got {value!r}")
    for g in items:
        if PurePosixPath(g).is_absolute() or ".." in PurePosixPath(g).parts:
            raise _err(where, f"glob {g!r} must be relative to the dataset root")
    return list(items)


def _metadata(value: Any, where: str) -> dict[str, Any]:
    d = dict(_check_keys(value or {}, METADATA_KEYS, where))
    if "modality" in d and d["modality"] is not None:
        mod = MODALITIES.get(str(d["modality"]).lower())
        if mod is None:
            raise _err(where + ".modality", f"unknown modality {d['modality']!r}; expected one of "
                       f"{', '.join(MODALITIES.values())}")
        d["modality"] = mod
    extra = d.pop("extra", None) or {}
    if not isinstance(extra, dict):
        raise _err(where + ".extra", f"expected a mapping, got {type(extra).__name__}")
    for k in extra:
        if k in METADATA_KEYS or k == "group":
            raise _err(where + ".extra", f"key {k!r} is reserved; set it at metadata level")
    out = {k: d.get(k) for k in ("modality", "scanning_mode", "device", "country", "licence")}
    out.update(extra)
    return out


def _label_paths(value: Any, onto: Any, where: str) -> list[str]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items:
        raise _err(where, f"expected an ontology path or a non-empty list of paths, got {value!r}")
    out = []
    for p in items:
        try:
            out.append(onto.validate_path(str(p)))
        except (KeyError, ValueError) as err:
            raise _err(where, str(err).strip("'\"")) from None
    return out


def _label_csv(value: Any, root: Path, onto: Any, where: str) -> dict[str, list[str]]:
    """Per-file ontology paths from a CSV: ``{file: F, path_column: C, label_column: L, separator: S}``.

    ``F`` is relative to the dataset root (or absolute); column ``C`` holds root-relative file paths, column
    ``L`` one ontology path (or several joined by ``S``, default ``;``); an empty cell leaves the file to the
    other rules. Every path is validated against the ontology here, naming the CSV row.
    """
    d = _check_keys(value, LABEL_CSV_KEYS, where)
    if "file" not in d or "label_column" not in d:
        raise _err(where, "needs 'file' and 'label_column' (and optionally 'path_column', 'separator')")
    path = Path(str(d["file"])).expanduser()
    path = path if path.is_absolute() else root / path
    if not path.is_file():
        raise _err(where + ".file", f"CSV {str(path)!r} does not exist")
    path_col, label_col = str(d.get("path_column", "path")), str(d["label_column"])
    sep = str(d.get("separator", ";"))
    out: dict[str, list[str]] = {}
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in (path_col, label_col) if c not in (reader.fieldnames or [])]
        if missing:
            raise _err(where, f"{path.name} has no column(s) {missing}; columns: {reader.fieldnames}")
        for n, row in enumerate(reader, start=2):  # line 1 is the header
            rel = PurePosixPath(str(row[path_col]).strip().replace("\\", "/")).as_posix()
            cell = str(row[label_col] or "").strip()
            if not cell or not rel or rel == ".":
                continue
            paths = _label_paths([p.strip() for p in cell.split(sep) if p.strip()], onto, f"{where} ({path.name} line {n})")
            if rel in out and out[rel] != paths:
                raise _err(where, f"{path.name} line {n}: {rel!r} is listed twice with different labels")
            out[rel] = paths
    return out


def _dataset(d: Any, i: int, base: Path, onto: Any, top: dict[str, Any]) -> DatasetSpec:
    where = f"datasets[{i}]"
    d = _check_keys(d, DATASET_KEYS, where)
    name = d.get("name")
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_-]+", name):
        raise _err(where, f"'name' must be a non-empty string of letters, digits, '_' or '-', got {name!r}")
    where = f"dataset {name!r}"
    kind = d.get("kind", "images")
    if kind not in KINDS:
        raise _err(where, f"unknown kind {kind!r}; expected one of {', '.join(KINDS)}")
    if "root" not in d:
        raise _err(where, "missing 'root'")
    root = Path(str(d["root"])).expanduser()
    root = (base / root).resolve() if not root.is_absolute() else root
    if not root.is_dir():
        raise _err(where, f"root folder {str(root)!r} does not exist")
    spec = DatasetSpec(name=name, root=root, kind=kind,
                       include=_globs(d.get("include", DEFAULT_INCLUDE[kind]), where + ".include"),
                       exclude=_globs(d.get("exclude", []), where + ".exclude"))
    if d.get("label") is not None:
        if not isinstance(d["label"], str):
            raise _err(where + ".label",
                       f"expected one ontology path (use 'labels' rules for more), got {d['label']!r}")
        spec.label = _label_paths(d["label"], onto, where + ".label")[0]
    rules = d.get("labels") or []
    if not isinstance(rules, list):
        raise _err(where + ".labels", "expected a list of rules {folder|regex, path|paths}")
    for j, r in enumerate(rules):
        rw = f"{where}.labels[{j}]"
        r = _check_keys(r, RULE_KEYS, rw)
        if ("folder" in r) == ("regex" in r):
            raise _err(rw, "a rule needs exactly one of 'folder' or 'regex'")
        if ("path" in r) == ("paths" in r):
            raise _err(rw, "a rule needs exactly one of 'path' or 'paths'")
        paths = _label_paths(r.get("path", r.get("paths")), onto, rw)
        if "folder" in r:
            spec.rules.append(LabelRule(paths, folder=str(r["folder"]).strip("/")))
        else:
            spec.rules.append(LabelRule(paths, regex=_regex(r["regex"], rw + ".regex")))
    if d.get("label_csv") is not None:
        spec.csv_labels = _label_csv(d["label_csv"], root, onto, where + ".label_csv")
    space = d.get("label_space")
    if space == "auto":
        known = [p for rule in spec.rules for p in rule.paths] + ([spec.label] if spec.label else [])
        known += [p for paths in spec.csv_labels.values() for p in paths]
        spec.label_space = sorted(set(known)) or None
    elif space is not None:
        spec.label_space = sorted(set(_label_paths(space, onto, where + ".label_space")))
    spec.metadata = _metadata(d.get("metadata"), where + ".metadata")
    if d.get("group_regex") is not None:
        spec.group_regex = _regex(d["group_regex"], where + ".group_regex")
    default_stride = 1 if kind == "image_sets" else top.get("frame_stride", 10)  # sets: already key frames
    spec.frame_stride = _int(d.get("frame_stride", default_stride), where + ".frame_stride", 1)
    spec.crop = _crop(d.get("crop", top.get("crop")), where + ".crop")
    spec.near_duplicates = _similarity(d.get("near_duplicates", top.get("near_duplicates")), where + ".near_duplicates")
    spec.noise = _noise(d.get("noise_frames", top.get("noise_frames")), where + ".noise_frames")
    spec.min_nonzero_pixels = _int(d.get("min_nonzero_pixels", top.get("min_nonzero_pixels", 1000)),
                                   where + ".min_nonzero_pixels", 0)
    return spec


def parse_manifest(doc: Any, base_dir: str | Path, source: str = "<manifest>") -> Manifest:
    """Validate a manifest document (already parsed YAML).

    Args:
        doc: the mapping.
        base_dir: folder relative roots and the ontology path resolve against.
        source: name used in error messages.

    Raises:
        ManifestError: naming the offending key / dataset / path.
    """
    from echocare.ontology import load_ontology

    base = Path(base_dir)
    try:
        top = _check_keys(doc, TOP_KEYS, "top level")
        onto_path = top.get("ontology")
        if onto_path is not None:
            p = Path(str(onto_path)).expanduser()
            onto_path = str(p if p.is_absolute() else (base / p).resolve())
            if not Path(onto_path).is_file():
                raise _err("ontology", f"file {onto_path!r} does not exist")
        onto = load_ontology(onto_path)
        m = Manifest(path=base / Path(source).name, datasets=[], ontology=onto_path, raw=dict(top))
        size = top.get("image_size", 256)
        m.image_size = 0 if size in (None, 0) else _int(size, "image_size", 16)
        fmt = str(top.get("format", "png")).lower()
        if fmt not in ("png", "jpeg", "jpg"):
            raise _err("format", f"expected 'png' or 'jpeg', got {top.get('format')!r}")
        m.image_format = "jpeg" if fmt == "jpg" else fmt
        m.jpeg_quality = _int(top.get("jpeg_quality", 95), "jpeg_quality", 1)
        m.shard_max_bytes = parse_size(top.get("shard_max_bytes", 1 << 30), "shard_max_bytes")
        m.shard_max_count = _int(top.get("shard_max_count", 10_000), "shard_max_count", 1)
        _int(top.get("min_nonzero_pixels", 1000), "min_nonzero_pixels", 0)
        dedup = _check_keys(top.get("dedup") or {}, DEDUP_KEYS, "dedup")
        if dedup.get("exact", True) is not True:
            raise _err("dedup.exact", "exact duplicates are always removed; this key can only be true")
        m.hash_kind = str(dedup.get("hash", "phash"))
        if m.hash_kind not in ("phash", "dhash"):
            raise _err("dedup.hash", f"expected 'phash' or 'dhash', got {m.hash_kind!r}")
        m.hash_size = _int(dedup.get("hash_size", 8), "dedup.hash_size", 4)
        m.near_scope = str(dedup.get("near_scope", "dataset"))
        if m.near_scope not in ("dataset", "global"):
            raise _err("dedup.near_scope", f"expected 'dataset' or 'global', got {m.near_scope!r}")
        datasets = top.get("datasets")
        if not isinstance(datasets, list) or not datasets:
            raise _err("datasets", "expected a non-empty list of datasets")
        seen: set[str] = set()
        for i, d in enumerate(datasets):
            spec = _dataset(d, i, base, onto, top)
            if spec.name in seen:
                raise _err(f"datasets[{i}]", f"duplicate dataset name {spec.name!r}")
            seen.add(spec.name)
            m.datasets.append(spec)
    except ManifestError as err:
        raise ManifestError(f"manifest {source}: {err}") from None
    return m


def load_manifest(path: str | Path) -> Manifest:
    """Read and validate a manifest YAML file (relative paths resolve against its folder)."""
    p = Path(path)
    if not p.is_file():
        raise ManifestError(f"manifest file {str(p)!r} does not exist")
    try:
        doc = yaml.safe_load(p.read_text())
    except yaml.YAMLError as err:
        raise ManifestError(f"manifest {p}: invalid YAML: {err}") from None
    m = parse_manifest(doc, p.resolve().parent, str(p))
    m.path = p.resolve()
    return m
