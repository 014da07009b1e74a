"""The EchoAtlas catalogue: public ultrasound datasets as data, validated on load.

The packaged ``datasets.yaml`` holds every dataset of seed 001 Table 1 and seed 003 Tables 1 and 5-7
(duplicates merged). A key an entry leaves out is ``unknown``; nothing is filled in by guess. Loading
checks every value against a closed vocabulary (access, tasks, modality, scanning mode, licence,
country code, source tag) and every anatomy id against the ontology, and names the entry and key of
the first bad value.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Iterator

import yaml

from echocare.catalog.scores import DETAIL_CHARACTERISTICS, SUMMARY_CHARACTERISTICS
from echocare.errors import UserError
from echocare.ontology import load_ontology

UNKNOWN = "unknown"
ACCESS = ("open", "on_request")
TASKS = ("classification", "segmentation", "detection", "landmark", "regression", "enhancement",
         "report_generation", "registration", "reconstruction", "tracking", "localization")
MODALITIES = ("B-mode", "CEUS", "Doppler", "M-mode", "elastography")
# seed 001 §4.1's five scanning modes: freehand 2D, diagnostic standard-plane 2D, 2D+t video,
# native 3D, 3D reconstructed from 2D
SCANNING_MODES = ("freehand_2d", "standard_planes_2d", "video", "volume_3d", "reconstructed_3d")
# SPDX identifiers (and two access regimes that are not a licence text) the catalogue may name
LICENCES = ("CC0-1.0", "CC-BY-4.0", "CC-BY-SA-4.0", "CC-BY-NC-4.0", "CC-BY-NC-SA-4.0", "CC-BY-NC-ND-4.0",
            "CC-BY-ND-4.0", "MIT", "Apache-2.0", "BSD-3-Clause", "ODbL-1.0", "PDDL-1.0",
            "data-use-agreement", "custom")
SOURCES = ("s001-T1", "s003-T1", "s003-T5", "s003-T6")
SIZE_KEYS = ("images", "videos", "patients", "reported_total")
SPLIT_KEYS = ("train", "val", "test")
TIERS = ("diamond", "platinum", "gold", "silver", "bronze", "steel", "unrated")
LIST_FIELDS = ("aliases", "tasks", "modality", "countries", "devices", "centres", "labels", "other_data",
               "readings")
TEXT_FIELDS = ("anatomy_text", "url", "citation", "challenge", "years", "notes")
KEYS = ({"id", "name", "anatomy", "access", "licence", "scanning_mode", "multimodal", "size", "splits",
         "published_tier", "sources", "shared"} | set(LIST_FIELDS) | set(TEXT_FIELDS))
_ID_RE = re.compile(r"^[a-z0-9][a-z0-9_]*$")
_COUNTRY_RE = re.compile(r"^[A-Z]{2}$")


class CatalogError(UserError, ValueError):
    """The catalogue YAML is invalid; the message names the entry and the key."""


@dataclass
class DatasetEntry:
    """One public dataset. List fields are ``[]`` and scalars ``"unknown"`` when the seeds do not say."""

    id: str
    name: str
    anatomy: list[str]
    sources: list[str]
    aliases: list[str] = field(default_factory=list)
    anatomy_text: str = UNKNOWN
    tasks: list[str] = field(default_factory=list)
    modality: list[str] = field(default_factory=list)
    scanning_mode: str = UNKNOWN
    multimodal: bool | str = UNKNOWN
    size: dict[str, int] = field(default_factory=dict)
    splits: dict[str, int] = field(default_factory=dict)
    countries: list[str] = field(default_factory=list)
    devices: list[str] = field(default_factory=list)
    centres: list[str] = field(default_factory=list)
    licence: str = UNKNOWN
    access: str = UNKNOWN
    url: str = UNKNOWN
    citation: str = UNKNOWN
    labels: list[str] = field(default_factory=list)
    other_data: list[str] = field(default_factory=list)
    years: str = UNKNOWN
    challenge: str = UNKNOWN
    published_tier: str = UNKNOWN
    shared: list[str] = field(default_factory=list)
    readings: list[str] = field(default_factory=list)
    notes: str = UNKNOWN

    def names(self) -> list[str]:
        """The id, the name and every alias (for lookup)."""
        return [self.id, self.name, *self.aliases]

    def to_dict(self) -> dict[str, Any]:
        """Every field, unknowns spelled ``unknown`` (lists stay lists; empty means not known)."""
        d = {k: getattr(self, k) for k in self.__dataclass_fields__}
        for k in LIST_FIELDS + ("anatomy", "sources", "shared"):
            d[k] = list(d[k])
        d["size"] = {k: self.size.get(k, UNKNOWN) for k in SIZE_KEYS}
        d["splits"] = dict(self.splits) or UNKNOWN
        return d


def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "", name.lower())


class Catalog:
    """The validated list of datasets with lookup by id, name or alias."""

    def __init__(self, entries: list[DatasetEntry], version: str = "1") -> None:
        self.entries = list(entries)
        self.version = version
        self._by_name: dict[str, DatasetEntry] = {}
        for e in self.entries:
            for n in e.names():
                key = _norm(n)
                other = self._by_name.get(key)
                if other is not None and other is not e:
                    raise CatalogError(f"dataset {e.id!r}: name or alias {n!r} is already used by {other.id!r}")
                self._by_name[key] = e

    def __len__(self) -> int:
        return len(self.entries)

    def __iter__(self) -> Iterator[DatasetEntry]:
        return iter(self.entries)

    def find(self, name: str) -> DatasetEntry | None:
        """The entry whose id, name or alias matches ``name`` (case, spaces and punctuation ignored)."""
        return self._by_name.get(_norm(name))

    def get(self, name: str) -> DatasetEntry:
        """Like :meth:`find` but raises ``KeyError`` naming close candidates."""
        e = self.find(name)
        if e is None:
            import difflib

            keys = difflib.get_close_matches(_norm(name), list(self._by_name), n=5, cutoff=0.6)
            close = list(dict.fromkeys(self._by_name[k].id for k in keys))
            hint = f"; did you mean {', '.join(close[:5])}?" if close else "; see `echocare catalog list`"
            raise KeyError(f"no dataset {name!r} in the catalogue{hint}")
        return e

    def filter(self, anatomy: str | None = None, task: str | None = None,
               licence: str | None = None) -> list[DatasetEntry]:
        """Entries with an anatomy id at or below ``anatomy``, the ``task``, the ``licence`` (case-insensitive)."""
        out = []
        for e in self.entries:
            if anatomy and not any(a == anatomy or a.startswith(anatomy.rstrip("/") + "/") for a in e.anatomy):
                continue
            if task and task.lower() not in e.tasks:
                continue
            if licence and e.licence.lower() != licence.lower():
                continue
            out.append(e)
        return out


def _list(value: Any, where: str, allowed: tuple[str, ...] | None = None) -> list[str]:
    if value is None or value == UNKNOWN:
        return []
    if not isinstance(value, list) or not all(isinstance(v, (str, int)) for v in value):
        raise CatalogError(f"{where}: expected a list of strings or 'unknown', got {value!r}")
    out = [str(v) for v in value]
    if allowed is not None:
        for v in out:
            if v not in allowed:
                raise CatalogError(f"{where}: unknown value {v!r}; expected one of {', '.join(allowed)}")
    return out


def _choice(value: Any, where: str, allowed: tuple[str, ...]) -> str:
    if value is None or value == UNKNOWN:
        return UNKNOWN
    if value not in allowed:
        raise CatalogError(f"{where}: unknown value {value!r}; expected one of {', '.join(allowed)} or 'unknown'")
    return str(value)


def _counts(value: Any, where: str, keys: tuple[str, ...]) -> dict[str, int]:
    if value is None or value == UNKNOWN:
        return {}
    if not isinstance(value, dict):
        raise CatalogError(f"{where}: expected a mapping of {', '.join(keys)}")
    out = {}
    for k, v in value.items():
        if k not in keys:
            raise CatalogError(f"{where}: unknown key {k!r}; allowed: {', '.join(keys)}")
        if v == UNKNOWN:
            continue
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise CatalogError(f"{where}.{k}: expected a count >= 0 or 'unknown', got {v!r}")
        out[k] = v
    return out


def parse_entry(raw: Any, i: int, onto: Any) -> DatasetEntry:
    """Validate one ``datasets:`` item (see the module docstring for the checks)."""
    if not isinstance(raw, dict):
        raise CatalogError(f"datasets[{i}]: expected a mapping")
    ident = raw.get("id")
    if not isinstance(ident, str) or not _ID_RE.match(ident):
        raise CatalogError(f"datasets[{i}]: 'id' must be lowercase letters, digits and '_', got {ident!r}")
    where = f"dataset {ident!r}"
    for k in raw:
        if k not in KEYS:
            raise CatalogError(f"{where}: unknown key {k!r}; allowed: {', '.join(sorted(KEYS))}")
    if not isinstance(raw.get("name"), str) or not raw["name"].strip():
        raise CatalogError(f"{where}: 'name' is required")
    anatomy = _list(raw.get("anatomy"), f"{where}.anatomy")
    for a in anatomy:
        if a not in onto.names:  # canonical ids only (no synonyms), so lookups and filters are exact
            hint = f" (did you mean {onto.validate_path(a)!r}?)" if a in onto else ""
            raise CatalogError(f"{where}.anatomy: {a!r} is not an ontology node id{hint}")
    sources = _list(raw.get("sources"), f"{where}.sources", SOURCES)
    if not sources:
        raise CatalogError(f"{where}: 'sources' must name at least one seed table")
    e = DatasetEntry(id=ident, name=raw["name"].strip(), anatomy=anatomy, sources=sources)
    for k in LIST_FIELDS:
        allowed = {"tasks": TASKS, "modality": MODALITIES}.get(k)
        setattr(e, k, _list(raw.get(k), f"{where}.{k}", allowed))
    for c in e.countries:
        if not _COUNTRY_RE.match(c):
            hint = " (YAML reads an unquoted NO as false: write \"NO\")" if c in ("False", "True") else ""
            raise CatalogError(f"{where}.countries: {c!r} is not a two-letter ISO 3166 code{hint}")
    for k in e.readings:
        if k not in KEYS:
            raise CatalogError(f"{where}.readings: {k!r} is not a catalogue key")
    for k in TEXT_FIELDS:
        v = raw.get(k, UNKNOWN)
        if v is None or not isinstance(v, (str, int)):
            raise CatalogError(f"{where}.{k}: expected text or 'unknown', got {v!r}")
        setattr(e, k, str(v))
    if e.url != UNKNOWN and not re.match(r"^https?://", e.url):
        raise CatalogError(f"{where}.url: expected an http(s) URL, got {e.url!r}")
    e.access = _choice(raw.get("access"), f"{where}.access", ACCESS)
    e.licence = _choice(raw.get("licence"), f"{where}.licence", LICENCES)
    e.scanning_mode = _choice(raw.get("scanning_mode"), f"{where}.scanning_mode", SCANNING_MODES)
    e.published_tier = _choice(raw.get("published_tier"), f"{where}.published_tier", TIERS)
    mm = raw.get("multimodal", UNKNOWN)
    if mm != UNKNOWN and not isinstance(mm, bool):
        raise CatalogError(f"{where}.multimodal: expected true, false or 'unknown', got {mm!r}")
    e.multimodal = mm
    e.size = _counts(raw.get("size"), f"{where}.size", SIZE_KEYS)
    e.splits = _counts(raw.get("splits"), f"{where}.splits", SPLIT_KEYS)
    known = set(SUMMARY_CHARACTERISTICS) | set(DETAIL_CHARACTERISTICS)
    e.shared = _list(raw.get("shared"), f"{where}.shared", tuple(sorted(known)))
    return e


def parse_catalog(doc: Any, onto: Any = None, source: str = "<catalog>") -> Catalog:
    """Validate a parsed catalogue document.

    Args:
        doc: the YAML mapping (``version``, ``datasets``).
        onto: ontology the anatomy ids must belong to (default: the packaged EchoAtlas ontology).
        source: name used in error messages.

    Raises:
        CatalogError: naming the file, entry and key.
    """
    onto = onto if onto is not None else load_ontology()
    try:
        if not isinstance(doc, dict) or not isinstance(doc.get("datasets"), list):
            raise CatalogError("expected a mapping with a 'datasets' list")
        entries, seen = [], set()
        for i, raw in enumerate(doc["datasets"]):
            e = parse_entry(raw, i, onto)
            if e.id in seen:
                raise CatalogError(f"datasets[{i}]: duplicate id {e.id!r}")
            seen.add(e.id)
            entries.append(e)
        return Catalog(entries, str(doc.get("version", "1")))
    except CatalogError as err:
        raise CatalogError(f"catalogue {source}: {err}") from None


def load_catalog(path: str | Path | None = None, onto: Any = None) -> Catalog:
    """Load and validate a catalogue YAML (default: the packaged ``echocare/catalog/datasets.yaml``)."""
    if path is None:
        text = resources.files("echocare.catalog").joinpath("datasets.yaml").read_text()
        source = "datasets.yaml"
    else:
        p = Path(path)
        if not p.is_file():
            raise CatalogError(f"catalogue file {str(p)!r} does not exist")
        text, source = p.read_text(), str(p)
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise CatalogError(f"catalogue {source}: invalid YAML: {err}") from None
    return parse_catalog(doc, onto, source)
