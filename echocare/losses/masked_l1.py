"""Masked reconstruction loss, tech report eq. (1)."""

from __future__ import annotations

import torch

__all__ = ["masked_l1_loss"]


def masked_l1_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean absolute error over masked elements (SimMIM / EchoCare eq. 1).

    ``L = sum(|pred - target| * m) / sum(m)`` where ``m`` is ``mask`` broadcast to ``pred``: with a
    single-channel mask and C image channels every masked pixel counts C times in the denominator, so
    the loss is a true per-element mean. Computed in float32.

    Args:
        pred: reconstruction, (B, C, H, W) (any shape).
        target: ground truth, same shape as ``pred``.
        mask: 1 = masked (counted), 0 = visible (ignored); fractional values act as weights. Shape
            broadcastable to ``pred``, or (B, H, W) for a (B, C, H, W) ``pred`` (broadcast over C).

    Returns:
        Scalar loss; 0 (still attached to ``pred``'s graph) when nothing is masked.

    Raises:
        ValueError: on shape mismatches, naming the shapes.
    """
    if pred.shape != target.shape:
        raise ValueError(f"masked_l1_loss: pred {tuple(pred.shape)} and target {tuple(target.shape)} differ")
    if mask.ndim == pred.ndim - 1 and pred.ndim >= 3 and mask.shape[0] == pred.shape[0]:
        mask = mask.unsqueeze(1)  # (B, H, W) -> (B, 1, H, W): broadcast over channels, not batch
    try:
        shape = torch.broadcast_shapes(mask.shape, pred.shape)
    except RuntimeError as err:
        raise ValueError(
            f"masked_l1_loss: mask {tuple(mask.shape)} does not broadcast to pred {tuple(pred.shape)}"
        ) from err
    if shape != pred.shape:
        raise ValueError(f"masked_l1_loss: mask {tuple(mask.shape)} would enlarge pred {tuple(pred.shape)}")
    weight = mask.float().expand(pred.shape)  # (B, C, H, W)
    error = (pred.float() - target.float()).abs()
    total = weight.sum()
    # Nothing masked: the numerator is exactly 0, dividing by 1 keeps a zero loss with a graph.
    return (error * weight).sum() / torch.where(total > 0, total, torch.ones_like(total))
