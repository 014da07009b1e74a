"""Synthetic random ontologies for tests and scaling benchmarks."""

from __future__ import annotations

import random

from echocare.ontology.ontology import Ontology
from echocare.ontology.schema import NodeSpec


def random_ontology(n_nodes: int, depth: int = 3, seed: int = 0) -> Ontology:
    """A random tree with exactly ``n_nodes`` nodes and exactly ``depth`` levels (0 .. depth-1).

    Ids are ``r<k>`` for roots and ``<parent>/n<k>`` below; node order is creation order (parents
    first). The first ``depth`` nodes form a chain so the requested depth is always reached.

    Args:
        n_nodes: number of nodes (>= depth).
        depth: number of levels (>= 1).
        seed: RNG seed; the same arguments always give the same ontology.

    Raises:
        ValueError: if ``depth < 1`` or ``n_nodes < depth``.
    """
    if depth < 1:
        raise ValueError(f"random_ontology: depth must be >= 1, got {depth}")
    if n_nodes < depth:
        raise ValueError(f"random_ontology: n_nodes ({n_nodes}) must be >= depth ({depth})")
    rng = random.Random(seed)
    ids: list[str] = []
    levels: list[int] = []
    parents: list[str | None] = []
    can_have_children: list[int] = []  # indices of nodes with level < depth - 1
    n_roots_target = max(1, round(n_nodes ** 0.5 / 4))
    for k in range(n_nodes):
        if k < depth:
            parent = k - 1 if k > 0 else None
        elif not can_have_children or rng.random() < (n_roots_target - 1) / n_nodes:
            parent = None
        else:
            parent = rng.choice(can_have_children)
        if parent is None:
            node_id, level = f"r{k}", 0
        else:
            node_id, level = f"{ids[parent]}/n{k}", levels[parent] + 1
        ids.append(node_id)
        levels.append(level)
        parents.append(None if parent is None else ids[parent])
        if level < depth - 1:
            can_have_children.append(k)
    nodes = [NodeSpec(i, i.rsplit("/", 1)[-1].upper(), lv, p) for i, lv, p in zip(ids, levels, parents)]
    return Ontology(nodes, name=f"random_{n_nodes}_{depth}_{seed}", version="synthetic")
