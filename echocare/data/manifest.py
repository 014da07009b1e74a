"""Dataset manifest (YAML) for ``echocare shards build``: parsing and validation.

Everything is validated before any file is decoded: unknown keys, duplicate
dataset names, missing roots, bad kinds / modalities / regexes and label paths
the ontology does not know are errors whose message names the key path and the
value, e.g. ``manifest m.yaml: datasets[0].kind: expected one of images, video,
dicom, image_sets, got 'movies' (dataset 'us')``. The document's shape is the
``_*Doc`` dataclasses below, read through :mod:`echocare.typed` (the same
mechanism as run configs and ontologies); this module then resolves what the
types cannot say (roots, ontology paths, regexes, top-level defaults). See
``docs/data.md`` for the reference of every key.
"""

from __future__ import annotations

import re
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, Literal, Optional, Union

from echocare.data.label_csv import LabelCsvDoc, read_label_csv
from echocare.errors import UserError
from echocare.ontology import load_ontology
from echocare.typed import Check, SchemaError, at_least, build, fields_of, key_path, note, read_yaml

KINDS = ("images", "video", "dicom", "image_sets")
MODALITIES = {m.lower(): m for m in ("B-mode", "CEUS", "Doppler", "M-mode", "elastography")}
DEFAULT_INCLUDE = {
    "images": ["**/*.png", "**/*.jpg", "**/*.jpeg", "**/*.bmp", "**/*.tif", "**/*.tiff"],
    "image_sets": ["**/*.png", "**/*.jpg", "**/*.jpeg", "**/*.bmp", "**/*.tif", "**/*.tiff"],
    "video": ["**/*.mp4", "**/*.avi", "**/*.mov", "**/*.mkv", "**/*.webm", "**/*.wmv", "**/*.mpg", "**/*.mpeg"],
    "dicom": ["**/*.dcm", "**/*.dicom", "**/*.DCM"],
}
_SIZE_RE = re.compile(r"^\s*([0-9.]+)\s*([kmgt]?i?b?)\s*$", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 1e3, "kb": 1e3, "kib": 1024, "m": 1e6, "mb": 1e6, "mib": 1024**2,
          "g": 1e9, "gb": 1e9, "gib": 1024**3, "t": 1e12, "tb": 1e12, "tib": 1024**4}
_NAME_RE = re.compile(r"[A-Za-z0-9_-]+")

# Value types of the document (see echocare.typed for the error each produces).
_Globs = Union[str, list[str]]
_Paths = Union[str, list[str]]
_Name = Annotated[str, Check(lambda s: bool(_NAME_RE.fullmatch(s)), "a name of letters, digits, '_' or '-'")]
_Similarity = Annotated[float, Check(lambda v: 0.0 < v <= 1.0, "a similarity in (0, 1] (e.g. 0.95)")]
_Positive = Annotated[float, Check(lambda v: v > 0, "a positive number")]
_ImageSize = Annotated[int, Check(lambda v: v == 0 or v >= 16, "0 or an integer >= 16")]
_Crop = Union[bool, Literal["scan_area", "none", "off"], None]


@dataclass
class _NoiseDoc:
    """``noise_frames:`` mapping."""

    eps: Optional[_Positive] = None
    min_samples: Annotated[int, at_least(2)] = 3


_Noise = Union[bool, _NoiseDoc, None]
_NearDuplicates = Union[Literal[False], _Similarity, None]


@dataclass
class _DedupDoc:
    """``dedup:`` mapping."""

    exact: Literal[True] = True
    hash: Literal["phash", "dhash"] = "phash"
    hash_size: Annotated[int, at_least(4)] = 8
    near_scope: Literal["dataset", "global"] = "dataset"


@dataclass
class _RuleDoc:
    """One ``labels:`` rule: ``folder`` or ``regex``, and ``path`` or ``paths``."""

    folder: Optional[str] = None
    regex: Optional[str] = None
    path: Optional[_Paths] = None
    paths: Optional[_Paths] = None


@dataclass
class _MetadataDoc:
    """``metadata:`` mapping (``extra`` holds free-form keys)."""

    modality: Optional[str] = None
    scanning_mode: Optional[str] = None
    device: Optional[str] = None
    country: Optional[str] = None
    licence: Optional[str] = None
    extra: Optional[dict] = None


@dataclass
class _DatasetDoc:
    """One ``datasets:`` entry as written (top-level defaults already filled in)."""

    name: _Name
    root: str
    kind: Literal["images", "video", "dicom", "image_sets"] = "images"
    include: Optional[_Globs] = None
    exclude: Optional[_Globs] = None
    label: Optional[str] = None
    labels: Optional[list[_RuleDoc]] = None
    label_space: Optional[_Paths] = None
    metadata: Optional[_MetadataDoc] = None
    group_regex: Optional[str] = None
    frame_stride: Annotated[int, at_least(1)] = 10
    crop: _Crop = False
    near_duplicates: _NearDuplicates = None
    noise_frames: _Noise = None
    min_nonzero_pixels: Annotated[int, at_least(0)] = 1000
    label_csv: Optional[LabelCsvDoc] = None


@dataclass
class _ManifestDoc:
    """The whole document; the per-dataset keys here are defaults for every dataset."""

    datasets: list[Any]
    ontology: Optional[str] = None
    image_size: Optional[_ImageSize] = 256
    min_nonzero_pixels: Annotated[int, at_least(0)] = 1000
    format: str = "png"
    jpeg_quality: Annotated[int, at_least(1)] = 95
    shard_max_bytes: Union[int, str] = 1 << 30
    shard_max_count: Annotated[int, at_least(1)] = 10_000
    dedup: Optional[_DedupDoc] = None
    crop: _Crop = False
    frame_stride: Annotated[int, at_least(1)] = 10
    noise_frames: _Noise = None
    near_duplicates: _NearDuplicates = None


_INHERITED = ("crop", "frame_stride", "noise_frames", "near_duplicates", "min_nonzero_pixels")


class ManifestError(UserError, ValueError):
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


def parse_size(value: Any, where: str) -> int:
    """Bytes from an int or a string like ``"500MB"`` / ``"1GiB"``.

    Raises:
        ManifestError: ``where: cannot read size ...`` for anything else.
    """
    try:
        return _size(value, where)
    except SchemaError as err:
        raise ManifestError(str(err)) from None


def _size(value: Any, where: str) -> int:
    if isinstance(value, bool):
        raise SchemaError(where, f"expected a size, got {value!r}")
    if isinstance(value, (int, float)):
        n = int(value)
    else:
        m = _SIZE_RE.match(str(value))
        if not m or m.group(2).lower() not in _UNITS:
            raise SchemaError(where, f"cannot read size {value!r} (use bytes or e.g. '500MB', '1GiB')")
        n = int(float(m.group(1)) * _UNITS[m.group(2).lower()])
    if n <= 0:
        raise SchemaError(where, f"expected a positive size, got {value!r}")
    return n


def _regex(value: str, where: str) -> re.Pattern[str]:
    try:
        return re.compile(value)
    except re.error as err:
        raise SchemaError(where, f"invalid regular expression {value!r}: {err}") from None


def _globs(value: _Globs, where: str) -> list[str]:
    items = [value] if isinstance(value, str) else value
    for i, g in enumerate(items):
        if not g or PurePosixPath(g).is_absolute() or ".." in PurePosixPath(g).parts:
            raise SchemaError(key_path(where, i) if items is value else where,
                              f"glob {g!r} must be non-empty and relative to the dataset root")
    return list(items)


def _metadata(doc: _MetadataDoc | None, where: str) -> dict[str, Any]:
    doc = doc or _MetadataDoc()
    modality = doc.modality
    if modality is not None:
        modality = MODALITIES.get(modality.lower())
        if modality is None:
            raise SchemaError(key_path(where, "modality"), f"expected one of {', '.join(MODALITIES.values())}, "
                              f"got {doc.modality!r}")
    extra = doc.extra or {}
    for k in extra:
        if k in fields_of(_MetadataDoc) or k == "group":
            raise SchemaError(key_path(key_path(where, "extra"), str(k)), "is reserved; set it at metadata level")
    out = {"modality": modality, "scanning_mode": doc.scanning_mode, "device": doc.device,
           "country": doc.country, "licence": doc.licence}
    out.update(extra)
    return out


def _label_paths(value: _Paths, onto: Any, where: str) -> list[str]:
    items = [value] if isinstance(value, str) else value
    if not items:
        raise SchemaError(where, f"expected an ontology path or a non-empty list of paths, got {value!r}")
    out = []
    for i, p in enumerate(items):
        try:
            out.append(onto.validate_path(p))
        except (KeyError, ValueError) as err:
            raise SchemaError(key_path(where, i) if items is value else where, str(err).strip("'\"")) from None
    return out


def _rule(doc: _RuleDoc, onto: Any, where: str) -> LabelRule:
    if (doc.folder is None) == (doc.regex is None):
        raise SchemaError(where, "a rule needs exactly one of 'folder' or 'regex'")
    if (doc.path is None) == (doc.paths is None):
        raise SchemaError(where, "a rule needs exactly one of 'path' or 'paths'")
    given = "path" if doc.path is not None else "paths"
    paths = _label_paths(getattr(doc, given), onto, key_path(where, given))
    if doc.folder is not None:
        return LabelRule(paths, folder=doc.folder.strip("/"))
    return LabelRule(paths, regex=_regex(str(doc.regex), key_path(where, "regex")))


def _dataset(raw: Any, where: str, base: Path, onto: Any, top: dict[str, Any]) -> DatasetSpec:
    if isinstance(raw, dict):  # top-level defaults first; image sets are key frames already (stride 1)
        inherit = [k for k in _INHERITED if not (k == "frame_stride" and raw.get("kind") == "image_sets")]
        raw = {k: top[k] for k in inherit if k in top} | raw
    d = build(_DatasetDoc, raw, where)
    root = Path(d.root).expanduser()
    root = (base / root).resolve() if not root.is_absolute() else root
    if not root.is_dir():
        raise SchemaError(key_path(where, "root"), f"folder {str(root)!r} does not exist")
    spec = DatasetSpec(name=d.name, root=root, kind=d.kind,
                       include=_globs(d.include if d.include is not None else DEFAULT_INCLUDE[d.kind],
                                      key_path(where, "include")),
                       exclude=_globs(d.exclude or [], key_path(where, "exclude")))
    if d.label is not None:
        spec.label = _label_paths(d.label, onto, key_path(where, "label"))[0]
    spec.rules = [_rule(r, onto, key_path(key_path(where, "labels"), j)) for j, r in enumerate(d.labels or [])]
    if d.label_csv is not None:
        spec.csv_labels = read_label_csv(d.label_csv, root, lambda v, w: _label_paths(v, onto, w),
                                          key_path(where, "label_csv"))
    if d.label_space == "auto":
        known = [p for rule in spec.rules for p in rule.paths] + ([spec.label] if spec.label else [])
        known += [p for paths in spec.csv_labels.values() for p in paths]
        spec.label_space = sorted(set(known)) or None
    elif d.label_space is not None:
        spec.label_space = sorted(set(_label_paths(d.label_space, onto, key_path(where, "label_space"))))
    spec.metadata = _metadata(d.metadata, key_path(where, "metadata"))
    if d.group_regex is not None:
        spec.group_regex = _regex(d.group_regex, key_path(where, "group_regex"))
    spec.frame_stride = 1 if d.kind == "image_sets" and "frame_stride" not in raw else d.frame_stride
    spec.crop = d.crop in (True, "scan_area")
    spec.near_duplicates = d.near_duplicates or None
    spec.noise = NoiseFilter() if d.noise_frames is True else (
        NoiseFilter(d.noise_frames.eps, d.noise_frames.min_samples) if isinstance(d.noise_frames, _NoiseDoc)
        else None)
    spec.min_nonzero_pixels = d.min_nonzero_pixels
    return spec


def _parse(doc: Any, base: Path, source: str) -> Manifest:
    top = build(_ManifestDoc, doc, "")
    onto_path = top.ontology
    if onto_path is not None:
        p = Path(onto_path).expanduser()
        onto_path = str(p if p.is_absolute() else (base / p).resolve())
        if not Path(onto_path).is_file():
            raise SchemaError("ontology", f"file {onto_path!r} does not exist")
    onto = load_ontology(onto_path)
    m = Manifest(path=base / Path(source).name, datasets=[], ontology=onto_path, raw=dict(doc))
    m.image_size = top.image_size or 0
    fmt = top.format.lower()
    if fmt not in ("png", "jpeg", "jpg", "raw-zstd"):
        raise SchemaError("format", f"expected one of png, jpeg, raw-zstd, got {top.format!r}")
    m.image_format = "jpeg" if fmt == "jpg" else fmt
    m.jpeg_quality = top.jpeg_quality
    m.shard_max_bytes = _size(top.shard_max_bytes, "shard_max_bytes")
    m.shard_max_count = top.shard_max_count
    dedup = top.dedup or _DedupDoc()
    m.hash_kind, m.hash_size, m.near_scope = dedup.hash, dedup.hash_size, dedup.near_scope
    if not top.datasets:
        raise SchemaError("datasets", "expected a non-empty list of datasets, got []")
    first: dict[str, int] = {}
    for i, raw in enumerate(top.datasets):
        where = key_path("datasets", i)
        name = raw.get("name") if isinstance(raw, dict) else None
        with note(f"dataset {name!r}") if isinstance(name, str) else nullcontext():
            spec = _dataset(raw, where, base, onto, dict(doc))
        if spec.name in first:
            raise SchemaError(key_path(where, "name"), f"duplicate dataset name {spec.name!r} "
                              f"(first at datasets[{first[spec.name]}])")
        first[spec.name] = i
        m.datasets.append(spec)
    return m


def parse_manifest(doc: Any, base_dir: str | Path, source: str = "<manifest>") -> Manifest:
    """Validate a manifest document (already parsed YAML).

    Args:
        doc: the mapping.
        base_dir: folder relative roots and the ontology path resolve against.
        source: name used in error messages.

    Raises:
        ManifestError: ``manifest SOURCE: KEY.PATH: what is wrong, with the value``.
    """
    try:
        return _parse(doc, Path(base_dir), source)
    except SchemaError as err:
        raise ManifestError(f"manifest {source}: {err}") from None


def load_manifest(path: str | Path) -> Manifest:
    """Read and validate a manifest YAML file (relative paths resolve against its folder)."""
    p = Path(path)
    if not p.is_file():
        raise ManifestError(f"manifest file {str(p)!r} does not exist")
    try:
        doc = read_yaml(p)
    except SchemaError as err:
        raise ManifestError(f"manifest {p}: {err}") from None
    m = parse_manifest(doc, p.resolve().parent, str(p))
    m.path = p.resolve()
    return m
