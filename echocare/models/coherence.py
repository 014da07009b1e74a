"""Hierarchy-coherent inference probabilities."""

from __future__ import annotations

from typing import Any

import torch

from echocare.losses.hierarchical import ancestor_min

__all__ = ["coherent_probs"]


def coherent_probs(logits: torch.Tensor, onto: Any) -> torch.Tensor:
    """Probabilities that never rank a child above its parent.

    ``p_i = min over {i} ∪ ancestors(i) of sigmoid(logits_u)``: the positive branch of eq. (2), i.e. the
    probability the loss trains for "the path root -> i is present". Since the ancestors of a child
    include its parent and all the parent's ancestors, ``p_child <= p_parent`` holds exactly. Computed by
    min in logit space (sigmoid is monotonic), so it costs one (B, N, D) gather.

    Args:
        logits: (..., N) classifier outputs.
        onto: hierarchy with ``ancestor_index`` (N, D) (an ``Ontology`` or ``HierarchyIndex``).

    Returns:
        (..., N) float32 probabilities in [0, 1].
    """
    return torch.sigmoid(ancestor_min(logits.float(), onto))
