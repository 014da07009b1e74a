"""The :class:`Ontology`: an anatomy tree (part -> organ -> structure) with label encoding.

Node index = position in the node list. Hierarchy tensors are sparse-by-construction: a padded
ancestor table of shape (N, D) and a parent vector, so every hierarchy operation costs O(N * D) or
O(edges), never a dense N x N matrix.
"""

from __future__ import annotations

import difflib
import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import yaml

from echocare.ontology.errors import UnknownNodeError
from echocare.ontology.schema import NodeSpec, parse_document, parse_nodes

LEVEL_NAMES: dict[int, str] = {0: "part", 1: "organ", 2: "structure"}


class Ontology:
    """An immutable anatomy ontology.

    Attributes:
        names: node ids (full paths, e.g. ``"thorax/heart/a4c"``); the index of a node is its position.
        levels: depth of each node (0 part, 1 organ, 2 structure; deeper allowed).
        parents: parent index of each node, -1 for roots.
        display_names: human-readable names.
        synonyms: alternative names per node (used by :meth:`index`, case-insensitive).
        children: child indices per node.
        ancestor_index: LongTensor (N, D), row i = [i, parent(i), grandparent(i), ...] padded with i.
        parent_index: LongTensor (N,), -1 for roots.
        level_nodes: node indices per level, level 0 first.
        max_level: deepest level; ``depth = max_level + 1`` = D.
        name, version, description: document metadata.

    Treat all attributes as read-only.
    """

    def __init__(self, nodes: Sequence[NodeSpec], name: str = "ontology", version: str = "0",
                 description: str = "") -> None:
        """Build from already validated nodes; use :meth:`from_nodes` / :func:`load_ontology` instead."""
        self.name = name
        self.version = version
        self.description = description
        self.names: list[str] = [n.id for n in nodes]
        self.display_names: list[str] = [n.name for n in nodes]
        self.levels: list[int] = [n.level for n in nodes]
        self.synonyms: list[list[str]] = [list(n.synonyms) for n in nodes]
        self._id_to_index: dict[str, int] = {node_id: i for i, node_id in enumerate(self.names)}
        self.parents: list[int] = [-1 if n.parent is None else self._id_to_index[n.parent] for n in nodes]
        self.children: list[list[int]] = [[] for _ in nodes]
        for i, p in enumerate(self.parents):
            if p >= 0:
                self.children[p].append(i)
        self.max_level: int = max(self.levels)
        self.depth: int = self.max_level + 1
        self._ancestors: list[list[int]] = [self._walk_up(i) for i in range(len(nodes))]
        self._subtree: list[list[int]] = self._build_subtrees()
        self._lookup: dict[str, int] = {node_id: i for i, node_id in enumerate(self.names)}
        for i, syns in enumerate(self.synonyms):
            for s in syns:
                self._lookup[s.lower()] = i

        table = [row + [i] * (self.depth - len(row)) for i, row in enumerate(self._ancestors)]
        self.ancestor_index: torch.Tensor = torch.tensor(table, dtype=torch.long).reshape(len(nodes), self.depth)
        self.parent_index: torch.Tensor = torch.tensor(self.parents, dtype=torch.long)
        self.level_nodes: list[torch.Tensor] = [
            torch.tensor([i for i, lv in enumerate(self.levels) if lv == level], dtype=torch.long)
            for level in range(self.depth)
        ]
        self._device_cache: dict[str, tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]] = {}

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_nodes(cls, nodes: Sequence[Mapping[str, Any]], name: str = "ontology", version: str = "0",
                   description: str = "") -> Ontology:
        """Validate node mappings (keys ``id, name, level, parent, synonyms``) and build an ontology.

        Raises:
            OntologyError: naming the bad node (see :func:`echocare.ontology.schema.parse_nodes`).
        """
        return cls(parse_nodes(nodes), name=name, version=version, description=description)

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any], source: str = "<dict>") -> Ontology:
        """Build from a document mapping ``{name, version, description, nodes}`` (as :meth:`to_dict`)."""
        nodes, info = parse_document(doc, source=source)
        return cls(nodes, **info)

    def to_dict(self) -> dict[str, Any]:
        """Plain-python document; ``Ontology.from_dict(onto.to_dict())`` rebuilds the same ontology."""
        nodes = []
        for i, node_id in enumerate(self.names):
            nodes.append({
                "id": node_id,
                "name": self.display_names[i],
                "level": self.levels[i],
                "parent": None if self.parents[i] < 0 else self.names[self.parents[i]],
                "synonyms": list(self.synonyms[i]),
            })
        doc: dict[str, Any] = {"name": self.name, "version": self.version}
        if self.description:
            doc["description"] = self.description
        doc["nodes"] = nodes
        return doc

    def to_yaml(self) -> str:
        """YAML text of :meth:`to_dict` (comments of the source file are not preserved)."""
        return yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True, width=120)

    # ------------------------------------------------------------------ basic queries
    def __len__(self) -> int:
        return len(self.names)

    def __repr__(self) -> str:
        counts = ", ".join(f"{LEVEL_NAMES.get(lv, f'level{lv}')}={len(ix)}" for lv, ix in enumerate(self.level_nodes))
        return f"Ontology(name={self.name!r}, version={self.version!r}, nodes={len(self)}, {counts})"

    def __contains__(self, path: object) -> bool:
        return isinstance(path, str) and self._find(path) is not None

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_device_cache"] = {}  # never pickle accelerator copies into dataloader workers
        return state

    @property
    def hash(self) -> str:
        """sha256 over the ordered (id, parent id) list: identifies the label space AND its index order.

        Display names and synonyms do not enter the hash; reordering nodes changes it (logit order).
        """
        pairs = [[node_id, None if p < 0 else self.names[p]] for node_id, p in zip(self.names, self.parents)]
        return hashlib.sha256(json.dumps(pairs, separators=(",", ":")).encode()).hexdigest()

    def _find(self, path: str) -> int | None:
        key = path.strip().strip("/").lower()
        return self._lookup.get(key)

    def index(self, path: str) -> int:
        """Index of a node given its id or a synonym (case-insensitive, surrounding '/' ignored).

        Raises:
            UnknownNodeError: (a KeyError and ValueError) naming the path, with close matches.
        """
        if not isinstance(path, str):
            raise UnknownNodeError(f"ontology node must be a string id, got {path!r}")
        found = self._find(path)
        if found is None:
            close = difflib.get_close_matches(path.strip().lower(), list(self._lookup), n=3, cutoff=0.6)
            hint = f"; did you mean {', '.join(repr(self.names[self._lookup[c]]) for c in close)}?" if close else ""
            raise UnknownNodeError(f"unknown ontology path {path!r} in ontology {self.name!r}{hint}")
        return found

    def validate_path(self, path: str) -> str:
        """Canonical id of ``path`` (an id or synonym).

        Raises:
            UnknownNodeError: a ``ValueError`` naming the bad path.
        """
        return self.names[self.index(path)]

    def ancestors(self, i: int) -> list[int]:
        """Strict ancestors of node ``i``, nearest first."""
        return list(self._ancestors[i][1:])

    def descendants(self, i: int) -> list[int]:
        """Strict descendants of node ``i`` (pre-order)."""
        return list(self._subtree[i][1:])

    def is_leaf(self, i: int) -> bool:
        """Whether node ``i`` has no children."""
        return not self.children[i]

    def _walk_up(self, i: int) -> list[int]:
        chain = [i]
        while self.parents[chain[-1]] >= 0:
            chain.append(self.parents[chain[-1]])
        return chain

    def _build_subtrees(self) -> list[list[int]]:
        """Pre-order subtree list per node (self first); total size O(N * D)."""
        subtree: list[list[int]] = [[] for _ in self.names]
        for i, chain in enumerate(self._ancestors):
            for a in chain:
                subtree[a].append(i)
        # Re-order each list to pre-order (stable for python-side use); sizes are unchanged.
        order: list[int] = []
        stack = [i for i in reversed(range(len(self.names))) if self.parents[i] < 0]
        while stack:
            node = stack.pop()
            order.append(node)
            stack.extend(reversed(self.children[node]))
        rank = {node: r for r, node in enumerate(order)}
        return [sorted(nodes, key=rank.__getitem__) for nodes in subtree]

    # ------------------------------------------------------------------ label encoding
    def encode(self, paths: Sequence[str] | str, label_space: Sequence[str] | None = None) -> torch.Tensor:
        """Target vector for one sample.

        Args:
            paths: labeled ontology paths (ids or synonyms); several allowed (multi-label); may be empty.
            label_space: nodes whose absence is known. ``None``: only the positives are known.

        Returns:
            FloatTensor (N,) with 1 = a labeled node or an ancestor of one; 0 = a label-space node that
            is not positive, or a descendant of such a node (unless positive); -1 = unknown.

        Raises:
            UnknownNodeError: a ``ValueError`` naming an unknown path.
        """
        return torch.tensor(self._encode_list(paths, label_space), dtype=torch.float32)

    def encode_batch(self, paths: Sequence[Sequence[str]],
                     label_spaces: Sequence[Sequence[str] | None] | None = None) -> torch.Tensor:
        """Stack :meth:`encode` over samples -> FloatTensor (B, N).

        Raises:
            ValueError: if the two lists differ in length, or naming an unknown path.
        """
        if label_spaces is None:
            label_spaces = [None] * len(paths)
        if len(label_spaces) != len(paths):
            raise ValueError(f"encode_batch: {len(paths)} path lists but {len(label_spaces)} label spaces")
        rows = [self._encode_list(p, s) for p, s in zip(paths, label_spaces)]
        return torch.tensor(rows, dtype=torch.float32).reshape(len(rows), len(self))

    def _encode_list(self, paths: Sequence[str] | str, label_space: Sequence[str] | None) -> list[float]:
        if isinstance(paths, str):
            paths = [paths]
        target = [-1.0] * len(self)
        positive: set[int] = set()
        for path in paths:
            positive.update(self._ancestors[self.index(path)])
        if label_space is not None:
            if isinstance(label_space, str):
                label_space = [label_space]
            for node in label_space:
                i = self.index(node)
                if i not in positive:  # a negative; its subtree cannot hold a positive (else i would be one)
                    for d in self._subtree[i]:
                        target[d] = 0.0
        for i in positive:
            target[i] = 1.0
        return target

    # ------------------------------------------------------------------ hierarchy reductions
    def _on(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        key = str(device)
        if key not in self._device_cache:
            self._device_cache[key] = (
                self.ancestor_index.to(device),
                self.parent_index.to(device),
                [ix.to(device) for ix in self.level_nodes],
            )
        return self._device_cache[key]

    def min_over_ancestors(self, x: torch.Tensor) -> torch.Tensor:
        """For x (..., N): out[..., i] = min of x over {i} ∪ ancestors(i). Differentiable, O(N * D)."""
        self._check_last_dim(x)
        ancestor_index, _, _ = self._on(x.device)
        return x[..., ancestor_index].amin(dim=-1)  # (..., N, D) -> (..., N)

    def max_over_descendants(self, x: torch.Tensor) -> torch.Tensor:
        """For x (..., N): out[..., i] = max of x over {i} ∪ descendants(i). Differentiable, O(edges).

        Propagates child -> parent level by level, deepest first, with ``scatter_reduce("amax")``.
        """
        self._check_last_dim(x)
        _, parent_index, level_nodes = self._on(x.device)
        out = x
        for level in range(self.max_level, 0, -1):
            nodes = level_nodes[level]  # (n_l,)
            src = out.index_select(-1, nodes)  # (..., n_l)
            index = parent_index[nodes].expand_as(src)  # (..., n_l)
            out = out.scatter_reduce(-1, index, src, reduce="amax", include_self=True)
        return out

    def _check_last_dim(self, x: torch.Tensor) -> None:
        if x.shape[-1] != len(self):
            raise ValueError(f"expected last dim {len(self)} (ontology {self.name!r}), got shape {tuple(x.shape)}")
