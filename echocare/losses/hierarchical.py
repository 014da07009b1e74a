"""Hierarchy-coherent multi-label loss, tech report eq. (2)-(3).

For scores s = sigmoid(logits) and a node i:

* target 1: p_i = min over {i} ∪ ancestors(i) of s_u  (a node is present only if its whole path is);
* target 0: p_i = max over {i} ∪ descendants(i) of s_u (a node is absent only if its whole subtree is);

L_HIE = mean over known entries (target != -1) of BCE(p_i, target_i).

Everything is done in log space: ``log p = min_{anc} logsigmoid(z)`` and
``log(1 - p) = min_{desc} logsigmoid(-z)`` (since 1 - max s = min (1 - s)), so no probability is ever
rounded to 0 or 1 before a log. Cost is O(B * N * depth) for the ancestor gather and O(B * edges) for the
level-by-level descendant propagation; no dense (B, N, N) tensor is built.

The ``onto`` argument is duck-typed: anything with ``ancestor_index`` (N, D), ``parent_index`` (N,) and
``level_nodes`` (list of index tensors, level 0 first) works, e.g. an ``echocare.ontology.Ontology`` or
the buffer module ``echocare.models.classifier.HierarchyIndex``.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

__all__ = ["descendant_min", "ancestor_min", "hierarchical_loss", "hierarchy_log_probs"]


def _check_logits(x: torch.Tensor, onto: Any, what: str) -> None:
    n = onto.ancestor_index.shape[0]
    if x.ndim < 1 or x.shape[-1] != n:
        raise ValueError(f"{what} has shape {tuple(x.shape)} but the ontology has {n} nodes (expected (..., {n}))")


def ancestor_min(x: torch.Tensor, onto: Any) -> torch.Tensor:
    """Min of ``x`` over each node and its ancestors.

    Args:
        x: (..., N) values per node.
        onto: hierarchy with ``ancestor_index`` (N, D), row i = [i, parent(i), ...] padded with i.

    Returns:
        (..., N) with ``out[..., i] = min_{u in {i} ∪ anc(i)} x[..., u]``.
    """
    _check_logits(x, onto, "ancestor_min input")
    ancestor_index = onto.ancestor_index.to(x.device)  # (N, D)
    return x[..., ancestor_index].amin(dim=-1)  # (..., N, D) -> (..., N)


def descendant_min(x: torch.Tensor, onto: Any) -> torch.Tensor:
    """Min of ``x`` over each node and its descendants, propagated child -> parent level by level.

    Args:
        x: (..., N) values per node.
        onto: hierarchy with ``parent_index`` (N,) and ``level_nodes`` (list of (n_l,) index tensors).

    Returns:
        (..., N) with ``out[..., i] = min_{u in {i} ∪ desc(i)} x[..., u]``. (Max over descendants is
        ``-descendant_min(-x)``.)
    """
    _check_logits(x, onto, "descendant_min input")
    device = x.device
    parent_index = onto.parent_index.to(device)  # (N,)
    levels = [nodes.to(device) for nodes in onto.level_nodes]  # level 0 first
    # position of every node inside its own level, to index parents within the level above
    position = torch.empty_like(parent_index)
    for nodes in levels:
        position[nodes] = torch.arange(nodes.numel(), device=device)
    # Work on one (..., n_l) slice per level, deepest first: each scatter touches only that level's edges,
    # so the whole propagation is O(B * edges) (no full (B, N) copy per level).
    reduced = [x[..., levels[-1]]]  # (..., n_deepest): leaves of the deepest level are their own subtree
    for level in range(len(levels) - 1, 0, -1):
        children = levels[level]  # (n_l,)
        above = x[..., levels[level - 1]]  # (..., n_{l-1})
        index = position[parent_index[children]].expand(*x.shape[:-1], children.numel())  # (..., n_l)
        reduced.append(above.scatter_reduce(-1, index, reduced[-1], reduce="amin", include_self=True))
    order = torch.cat(levels[::-1])  # node id of each column of the concatenation, deepest level first
    inverse = torch.empty_like(order)
    inverse[order] = torch.arange(order.numel(), device=device)
    return torch.cat(reduced, dim=-1)[..., inverse]  # (..., N) back in node order


def hierarchy_log_probs(logits: torch.Tensor, onto: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Log of the hierarchy-coherent probabilities used by eq. (2).

    Args:
        logits: (B, N) raw classifier outputs.
        onto: hierarchy (see module docstring).

    Returns:
        ``(log_p_pos, log_1m_p_neg)``, both (B, N): ``log min_{anc} s`` (positive branch) and
        ``log (1 - max_{desc} s)`` (negative branch).
    """
    z = logits.float()
    log_p_pos = ancestor_min(F.logsigmoid(z), onto)  # log min_{anc} s
    log_1m_p_neg = descendant_min(F.logsigmoid(-z), onto)  # log min_{desc} (1 - s)
    return log_p_pos, log_1m_p_neg


def hierarchical_loss(logits: torch.Tensor, targets: torch.Tensor, onto: Any) -> torch.Tensor:
    """Hierarchical BCE (eq. 2-3) averaged over the known entries.

    Args:
        logits: (B, N) classifier outputs (any float dtype; computed in float32).
        targets: (B, N) with 1 = positive, 0 = negative, -1 = unknown (ignored).
        onto: hierarchy with ``ancestor_index``, ``parent_index``, ``level_nodes``.

    Returns:
        Scalar mean BCE over entries with target != -1; 0 (attached to ``logits``) if there are none.

    Raises:
        ValueError: if shapes disagree with each other or the ontology, or targets hold other values.
    """
    if logits.ndim != 2:
        raise ValueError(f"hierarchical_loss: logits must be (B, N), got {tuple(logits.shape)}")
    if targets.shape != logits.shape:
        raise ValueError(
            f"hierarchical_loss: targets {tuple(targets.shape)} and logits {tuple(logits.shape)} differ"
        )
    _check_logits(logits, onto, "hierarchical_loss logits")
    targets = targets.to(device=logits.device)
    positive = targets == 1
    negative = targets == 0
    if bool(((targets != -1) & ~positive & ~negative).any()):
        bad = torch.unique(targets[(targets != -1) & ~positive & ~negative])[:5].tolist()
        raise ValueError(f"hierarchical_loss: targets must be 1, 0 or -1; found {bad}")
    log_p_pos, log_1m_p_neg = hierarchy_log_probs(logits, onto)
    zero = torch.zeros_like(log_p_pos)
    nll = -torch.where(positive, log_p_pos, torch.where(negative, log_1m_p_neg, zero))  # (B, N)
    known = (positive | negative).sum()
    return nll.sum() / torch.where(known > 0, known, torch.ones_like(known)).float()
