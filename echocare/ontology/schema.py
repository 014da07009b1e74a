"""Parsing and validation of ontology documents (the YAML / dict form).

A document is a mapping with a ``nodes`` list (plus optional ``name``, ``version``, ``description``).
Each node is a mapping with the keys of :class:`_NodeDoc`; ``id`` is required, the others can be
derived: ``parent`` from the id prefix, ``level`` from the parent, ``name`` from the leaf, ``synonyms``
defaults to ``[]``. Everything that is given is checked against what it implies.

Shapes and types are read through :mod:`echocare.typed` (the mechanism shared with run configs and
manifests), so errors name the key path and the value, e.g.
``ontology o.yaml: nodes[3].level: expected an integer >= 0 or null, got True (node 'a/b')``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Optional, Union

from echocare.ontology.errors import OntologyError
from echocare.typed import NON_EMPTY, Check, SchemaError, at_least, build, coerce, fields_of, key_path

_SEGMENT = r"[a-z][a-z0-9]*(?:_[a-z0-9]+)*"
ID_PATTERN = re.compile(rf"^{_SEGMENT}(?:/{_SEGMENT})*$")
_Id = Annotated[str, Check(lambda s: bool(ID_PATTERN.match(s)),
                           "an id of lowercase snake_case segments joined by '/' (e.g. 'thorax/heart/a4c')")]
_Text = Annotated[str, NON_EMPTY]


@dataclass
class _NodeDoc:
    """One node as written."""

    id: _Id
    name: Optional[_Text] = None
    level: Optional[Annotated[int, at_least(0)]] = None
    parent: Optional[str] = None
    synonyms: Optional[list[_Text]] = None


@dataclass
class _OntologyDoc:
    """The whole document."""

    nodes: list[Any]
    name: Optional[str] = None
    version: Optional[Union[str, int, float]] = None
    description: Optional[str] = None


NODE_KEYS: tuple[str, ...] = tuple(fields_of(_NodeDoc))
DOCUMENT_KEYS: tuple[str, ...] = tuple(fields_of(_OntologyDoc))


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


def _node(raw: Any, position: int) -> _NodeDoc:
    """Type/key checks of one raw node mapping; errors carry ``(node 'id')`` when the id is readable."""
    where = key_path("nodes", position)
    node_id = raw.get("id") if isinstance(raw, Mapping) else None
    try:
        return build(_NodeDoc, raw, where)
    except SchemaError as err:
        named = isinstance(node_id, str) and err.path != key_path(where, "id")
        raise (err.with_note(f"node {node_id!r}") if named else err) from None


def _resolve_parent(raw: Mapping[str, Any], doc: _NodeDoc) -> str | None:
    """Explicit parent if given (``None`` = root when the key is present), else the id prefix."""
    if "parent" in raw:
        return doc.parent
    return doc.id.rsplit("/", 1)[0] if "/" in doc.id else None


def _check_acyclic(parent_of: dict[str, str | None], position: dict[str, int]) -> None:
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
            raise SchemaError(key_path(key_path("nodes", position[node]), "parent"),
                              f"parent cycle {' -> '.join(repr(c) for c in cycle)}")
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
            synonym that clashes with another node. The message names the key path (``nodes[3].level``),
            the value and the node.
    """
    try:
        return _parse_nodes(nodes)
    except SchemaError as err:
        raise OntologyError(str(err)) from None


def _parse_nodes(nodes: Any) -> list[NodeSpec]:
    raw_nodes = coerce(nodes, list[Any], "nodes")
    if not raw_nodes:
        raise SchemaError("nodes", "is empty: an ontology needs at least one node")
    docs = [_node(raw, i) for i, raw in enumerate(raw_nodes)]
    parent_of: dict[str, str | None] = {}
    position: dict[str, int] = {}
    for i, (raw, doc) in enumerate(zip(raw_nodes, docs)):
        if doc.id in position:
            raise SchemaError(key_path(key_path("nodes", i), "id"),
                              f"duplicate id {doc.id!r} (first at nodes[{position[doc.id]}])")
        position[doc.id] = i
        parent_of[doc.id] = _resolve_parent(raw, doc)
    for i, (raw, doc) in enumerate(zip(raw_nodes, docs)):
        parent = parent_of[doc.id]
        if parent is not None and parent not in parent_of:
            key, how = ("parent", "") if "parent" in raw else ("id", " (the id's prefix; add that node "
                                                                     "or set 'parent')")
            raise SchemaError(key_path(key_path("nodes", i), key),
                              f"unknown parent {parent!r} of node {doc.id!r}{how}")
    _check_acyclic(parent_of, position)

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
    for i, doc in enumerate(docs):
        where = key_path("nodes", i)
        parent = parent_of[doc.id]
        leaf = doc.id.rsplit("/", 1)[-1]
        expected_id = leaf if parent is None else f"{parent}/{leaf}"
        if doc.id != expected_id:
            hint = "a root id must be a single segment" if parent is None else f"expected {expected_id!r}"
            raise SchemaError(key_path(where, "id"), f"{doc.id!r} does not equal parent id + '/' + leaf ({hint})")
        level = level_of(doc.id)
        if doc.level is not None and doc.level != level:
            parent_level = "none (root)" if parent is None else str(level - 1)
            raise SchemaError(
                key_path(where, "level"),
                f"level {doc.level} of node {doc.id!r} does not increase by one along the edge from parent "
                f"{parent!r} (parent level {parent_level}, expected {level})"
            )
        name = (doc.name or default_display_name(doc.id)).strip()
        synonyms = tuple(s.strip() for s in (doc.synonyms or ()))
        specs.append(NodeSpec(doc.id, name, level, parent, synonyms))
    _check_synonyms(specs)
    return specs


def _check_synonyms(specs: Sequence[NodeSpec]) -> None:
    """Synonyms must resolve to exactly one node and never shadow another node's id."""
    owner: dict[str, str] = {spec.id: spec.id for spec in specs}
    for i, spec in enumerate(specs):
        for j, synonym in enumerate(spec.synonyms):
            key = synonym.lower()
            other = owner.get(key)
            if other is not None and other != spec.id:
                raise SchemaError(key_path(key_path(key_path("nodes", i), "synonyms"), j),
                                  f"synonym {synonym!r} of node {spec.id!r} is already used by node {other!r}")
            owner[key] = spec.id


def parse_document(doc: Any, source: str = "<dict>") -> tuple[list[NodeSpec], dict[str, Any]]:
    """Validate a whole ontology document.

    Args:
        doc: mapping with ``nodes`` and optional ``name``, ``version``, ``description``.
        source: where the document came from, used in error messages.

    Returns:
        ``(nodes, info)`` where ``info`` holds ``name``, ``version`` and ``description``.

    Raises:
        OntologyError: ``ontology SOURCE: KEY.PATH: what is wrong, with the value``.
    """
    try:
        top = build(_OntologyDoc, doc, "")
        nodes = _parse_nodes(top.nodes)
    except SchemaError as err:
        raise OntologyError(f"ontology {source}: {err}") from None
    info = {
        "name": top.name or "ontology",
        "version": str(top.version or "0"),
        "description": top.description or "",
    }
    return nodes, info
