"""Parsing and validation of ontology documents (the YAML / dict form).

A document is a mapping with a ``nodes`` list (plus optional ``name``, ``version``, ``description``).
Each node is a mapping with the keys in :data:`NODE_KEYS`; ``id`` is required, the others can be
derived: ``parent`` from the id prefix, ``level`` from the parent, ``name`` from the leaf, ``synonyms``
defaults to ``[]``. Everything that is given is checked against what it implies.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from echocare.ontology.errors import OntologyError

NODE_KEYS: tuple[str, ...] = ("id", "name", "level", "parent", "synonyms")
DOCUMENT_KEYS: tuple[str, ...] = ("name", "version", "description", "nodes")

_SEGMENT = r"[a-z][a-z0-9]*(?:_[a-z0-9]+)*"
ID_PATTERN = re.compile(rf"^{_SEGMENT}(?:/{_SEGMENT})*$")


@dataclass(frozen=True)
class NodeSpec:
    """One validated node: canonical id, display name, level, parent id (None for roots), synonyms."""

    id: str
    name: str
    level: int
    parent: str | None
    synonyms: tuple[str, ...] = field(default_factory=tuple)


def default_display_name(node_id: str) -> str:
    """Display name derived from the last id segment (``"left_ventricle"`` -> ``"Left ventricle"``)."""
    leaf = node_id.rsplit("/", 1)[-1].replace("_", " ")
    return leaf[:1].upper() + leaf[1:]


def _node_label(raw: Any, position: int) -> str:
    if isinstance(raw, Mapping) and "id" in raw:
        return f"node {raw['id']!r} (#{position})"
    return f"node #{position}"


def _check_raw_node(raw: Any, position: int) -> None:
    """Type/key checks of one raw node mapping."""
    label = _node_label(raw, position)
    if not isinstance(raw, Mapping):
        raise OntologyError(f"{label}: expected a mapping with keys {list(NODE_KEYS)}, got {type(raw).__name__}")
    unknown = [k for k in raw if k not in NODE_KEYS]
    if unknown:
        raise OntologyError(f"{label}: unknown key(s) {unknown}; allowed keys are {list(NODE_KEYS)}")
    if "id" not in raw:
        raise OntologyError(f"{label}: missing required key 'id'")
    node_id = raw["id"]
    if not isinstance(node_id, str) or not ID_PATTERN.match(node_id):
        raise OntologyError(
            f"{label}: bad id {node_id!r}; ids are lowercase snake_case segments joined by '/', "
            "e.g. 'thorax/heart/a4c'"
        )
    parent = raw.get("parent")
    if parent is not None and not isinstance(parent, str):
        raise OntologyError(f"{label}: 'parent' must be a node id string or null, got {parent!r}")
    level = raw.get("level")
    if level is not None and (isinstance(level, bool) or not isinstance(level, int) or level < 0):
        raise OntologyError(f"{label}: 'level' must be a non-negative integer, got {level!r}")
    name = raw.get("name")
    if name is not None and (not isinstance(name, str) or not name.strip()):
        raise OntologyError(f"{label}: 'name' must be a non-empty string, got {name!r}")
    synonyms = raw.get("synonyms")
    if synonyms is not None and (
        isinstance(synonyms, str)
        or not isinstance(synonyms, Sequence)
        or not all(isinstance(s, str) and s.strip() for s in synonyms)
    ):
        raise OntologyError(f"{label}: 'synonyms' must be a list of non-empty strings, got {synonyms!r}")


def _resolve_parent(raw: Mapping[str, Any]) -> str | None:
    """Explicit parent if given (``None`` = root when the key is present), else the id prefix."""
    if "parent" in raw:
        return raw["parent"]
    node_id: str = raw["id"]
    return node_id.rsplit("/", 1)[0] if "/" in node_id else None


def _check_acyclic(parent_of: dict[str, str | None]) -> None:
    """Raise naming a node of the first parent cycle found."""
    state: dict[str, int] = {}  # 1 = on the current walk, 2 = known to reach a root
    for start in parent_of:
        walk: list[str] = []
        node: str | None = start
        while node is not None and state.get(node) is None:
            state[node] = 1
            walk.append(node)
            node = parent_of[node]
        if node is not None and state[node] == 1:
            cycle = walk[walk.index(node):] + [node]
            raise OntologyError(f"node {node!r}: parent cycle {' -> '.join(cycle)}")
        for visited in walk:
            state[visited] = 2


def parse_nodes(nodes: Sequence[Mapping[str, Any]]) -> list[NodeSpec]:
    """Validate raw node mappings and return them as :class:`NodeSpec` (same order).

    Args:
        nodes: node mappings with keys among ``id, name, level, parent, synonyms``.

    Returns:
        The validated nodes, in input order.

    Raises:
        OntologyError: unknown key, bad id, duplicate id, unknown parent, cycle, a level that does
            not increase by exactly one along an edge, an id that is not ``parent + '/' + leaf``, or a
            synonym that clashes with another node. The message names the node.
    """
    if isinstance(nodes, (str, bytes)) or not isinstance(nodes, Sequence):
        raise OntologyError(f"'nodes' must be a list of node mappings, got {type(nodes).__name__}")
    if not nodes:
        raise OntologyError("'nodes' is empty: an ontology needs at least one node")
    parent_of: dict[str, str | None] = {}
    for position, raw in enumerate(nodes):
        _check_raw_node(raw, position)
        node_id = raw["id"]
        if node_id in parent_of:
            raise OntologyError(f"node {node_id!r} (#{position}): duplicate id")
        parent_of[node_id] = _resolve_parent(raw)
    for node_id, parent in parent_of.items():
        if parent is not None and parent not in parent_of:
            raise OntologyError(f"node {node_id!r}: unknown parent {parent!r}")
    _check_acyclic(parent_of)

    levels: dict[str, int] = {}

    def level_of(node_id: str) -> int:
        chain = []
        node: str | None = node_id
        while node is not None and node not in levels:
            chain.append(node)
            node = parent_of[node]
        base = -1 if node is None else levels[node]
        for offset, item in enumerate(reversed(chain), start=1):
            levels[item] = base + offset
        return levels[node_id]

    specs: list[NodeSpec] = []
    for raw in nodes:
        node_id = raw["id"]
        parent = parent_of[node_id]
        expected_id = node_id.rsplit("/", 1)[-1] if parent is None else f"{parent}/{node_id.rsplit('/', 1)[-1]}"
        if node_id != expected_id:
            hint = "a root id must be a single segment" if parent is None else f"expected {expected_id!r}"
            raise OntologyError(f"node {node_id!r}: id does not equal parent id + '/' + leaf ({hint})")
        level = level_of(node_id)
        given = raw.get("level")
        if given is not None and given != level:
            parent_level = "none (root)" if parent is None else str(level - 1)
            raise OntologyError(
                f"node {node_id!r}: level {given} does not increase by one along the edge from parent "
                f"{parent!r} (parent level {parent_level}, expected {level})"
            )
        name = raw.get("name") or default_display_name(node_id)
        synonyms = tuple(s.strip() for s in (raw.get("synonyms") or ()))
        specs.append(NodeSpec(node_id, name.strip(), level, parent, synonyms))
    _check_synonyms(specs)
    return specs


def _check_synonyms(specs: Sequence[NodeSpec]) -> None:
    """Synonyms must resolve to exactly one node and never shadow another node's id."""
    owner: dict[str, str] = {spec.id: spec.id for spec in specs}
    for spec in specs:
        for synonym in spec.synonyms:
            key = synonym.lower()
            other = owner.get(key)
            if other is not None and other != spec.id:
                raise OntologyError(
                    f"node {spec.id!r}: synonym {synonym!r} is already used by node {other!r}"
                )
            owner[key] = spec.id


def parse_document(doc: Any, source: str = "<dict>") -> tuple[list[NodeSpec], dict[str, Any]]:
    """Validate a whole ontology document.

    Args:
        doc: mapping with ``nodes`` and optional ``name``, ``version``, ``description``.
        source: where the document came from, used in error messages.

    Returns:
        ``(nodes, info)`` where ``info`` holds ``name``, ``version`` and ``description``.

    Raises:
        OntologyError: naming the bad top-level key or node.
    """
    if not isinstance(doc, Mapping):
        raise OntologyError(f"{source}: an ontology document must be a mapping, got {type(doc).__name__}")
    unknown = [k for k in doc if k not in DOCUMENT_KEYS]
    if unknown:
        raise OntologyError(f"{source}: unknown top-level key(s) {unknown}; allowed keys are {list(DOCUMENT_KEYS)}")
    if "nodes" not in doc:
        raise OntologyError(f"{source}: missing required top-level key 'nodes'")
    try:
        nodes = parse_nodes(doc["nodes"])
    except OntologyError as err:
        raise OntologyError(f"{source}: {err}") from None
    info = {
        "name": str(doc.get("name") or "ontology"),
        "version": str(doc.get("version") or "0"),
        "description": str(doc.get("description") or ""),
    }
    return nodes, info
