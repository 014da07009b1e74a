"""Hierarchical meta-object classifier (part -> organ -> structure) and its hierarchy buffers."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

__all__ = ["HierarchicalClassifier", "HierarchyIndex"]


class HierarchyIndex(nn.Module):
    """Ontology index tensors as non-persistent buffers, so they follow ``model.to(device)``.

    Exposes the attributes the hierarchy ops need (``ancestor_index``, ``parent_index``, ``level_nodes``),
    so it can be passed wherever an ``Ontology`` is accepted by ``hierarchical_loss`` / ``coherent_probs``.

    Args:
        onto: an ontology (anything with ``ancestor_index``, ``parent_index``, ``level_nodes``).
    """

    def __init__(self, onto: Any) -> None:
        super().__init__()
        ancestor_index = torch.as_tensor(onto.ancestor_index, dtype=torch.long)
        parent_index = torch.as_tensor(onto.parent_index, dtype=torch.long)
        if ancestor_index.ndim != 2 or parent_index.shape != ancestor_index.shape[:1]:
            raise ValueError(
                f"ontology index shapes disagree: ancestor_index {tuple(ancestor_index.shape)}, "
                f"parent_index {tuple(parent_index.shape)}"
            )
        self.num_nodes = int(ancestor_index.shape[0])
        self.num_levels = len(onto.level_nodes)
        self.register_buffer("ancestor_index", ancestor_index.clone(), persistent=False)  # (N, D)
        self.register_buffer("parent_index", parent_index.clone(), persistent=False)  # (N,)
        for level, nodes in enumerate(onto.level_nodes):
            self.register_buffer(f"level_{level}", torch.as_tensor(nodes, dtype=torch.long).clone(), persistent=False)

    @property
    def level_nodes(self) -> list[torch.Tensor]:
        """Node indices per level, level 0 first."""
        return [getattr(self, f"level_{level}") for level in range(self.num_levels)]

    def __len__(self) -> int:
        return self.num_nodes


class HierarchicalClassifier(nn.Module):
    """Pooled encoder features -> MLP -> one logit per ontology node (N = N_p + N_o + N_a).

    Args:
        in_features: encoder feature channels (``encoder.num_features``).
        num_classes: number of ontology nodes N.
        hidden_dim: MLP hidden width (default: ``in_features``).
        dropout: dropout before the last layer.
    """

    def __init__(self, in_features: int, num_classes: int, hidden_dim: int | None = None, dropout: float = 0.0) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"HierarchicalClassifier needs at least one class, got num_classes={num_classes}")
        hidden_dim = hidden_dim or in_features
        self.num_classes = num_classes
        self.mlp = nn.Sequential(
            nn.Linear(in_features, hidden_dim),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(hidden_dim, num_classes),
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Map final encoder features (B, h, w, C) NHWC to logits (B, N)."""
        pooled = features.mean(dim=(1, 2))  # (B, C)
        return self.mlp(pooled)  # (B, N)
