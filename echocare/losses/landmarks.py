"""Landmark heatmap regression loss."""

from __future__ import annotations

import torch


def heatmap_mse_loss(
    pred: torch.Tensor, target: torch.Tensor, visible: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean squared error between heatmaps, averaged over visible landmarks.

    Args:
        pred: (B, L, h, w) predicted heatmaps.
        target: (B, L, h, w) target heatmaps (e.g. Gaussians with peak 1).
        visible: optional (B, L) {0, 1} mask; invisible landmarks are ignored.

    Returns:
        Scalar loss; 0 (keeping the graph) when no landmark is visible.
    """
    if pred.shape != target.shape:
        raise ValueError(f"heatmap_mse_loss: pred {tuple(pred.shape)} vs target {tuple(target.shape)}")
    per_landmark = ((pred.float() - target.float()) ** 2).mean(dim=(-2, -1))  # (B, L)
    if visible is None:
        return per_landmark.mean()
    if visible.shape != per_landmark.shape:
        raise ValueError(f"visible should be {tuple(per_landmark.shape)}, got {tuple(visible.shape)}")
    weight = visible.float()
    if float(weight.sum()) == 0:
        return per_landmark.sum() * 0.0
    return (per_landmark * weight).sum() / weight.sum()
