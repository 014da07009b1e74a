"""Detection loss primitives: sigmoid focal loss, GIoU loss, FCOS centerness."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchvision.ops import generalized_box_iou_loss, sigmoid_focal_loss


def focal_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    normalizer: float | torch.Tensor,
    alpha: float = 0.25,
    gamma: float = 2.0,
) -> torch.Tensor:
    """Sigmoid focal loss summed over all entries and divided by ``normalizer``.

    Args:
        logits: (..., K) class logits.
        targets: same shape, {0, 1}.
        normalizer: usually the number of positive locations (clamped to >= 1).
        alpha: positive/negative balance; a negative value disables it.
        gamma: focusing exponent.
    """
    if logits.shape != targets.shape:
        raise ValueError(f"focal_loss: logits {tuple(logits.shape)} vs targets {tuple(targets.shape)}")
    loss = sigmoid_focal_loss(logits.float(), targets.float(), alpha=alpha, gamma=gamma, reduction="sum")
    return loss / torch.clamp(torch.as_tensor(normalizer, dtype=torch.float32, device=logits.device), min=1.0)


def giou_loss(pred: torch.Tensor, target: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Weighted mean of ``1 - GIoU`` between matched boxes.

    Args:
        pred: (M, 4) predicted boxes x1, y1, x2, y2.
        target: (M, 4) matched ground-truth boxes.
        weights: optional (M,) non-negative weights (e.g. centerness targets);
            falls back to a plain mean when they sum to zero.

    Returns:
        Scalar; 0 (with gradient graph) when M = 0.
    """
    if pred.shape != target.shape or pred.shape[-1] != 4:
        raise ValueError(f"giou_loss: pred {tuple(pred.shape)} vs target {tuple(target.shape)}")
    if pred.shape[0] == 0:
        return pred.sum() * 0.0
    per_box = generalized_box_iou_loss(pred.float(), target.float(), reduction="none")  # (M,)
    if weights is None or float(weights.sum()) <= 0:
        return per_box.mean()
    return (per_box * weights).sum() / weights.sum()


def centerness_target(ltrb: torch.Tensor) -> torch.Tensor:
    """FCOS centerness ``sqrt(min(l,r)/max(l,r) * min(t,b)/max(t,b))`` for (M, 4) distances, in [0, 1]."""
    ltrb = ltrb.clamp(min=0)
    lr, tb = ltrb[:, [0, 2]], ltrb[:, [1, 3]]
    ratio = (lr.min(dim=1).values / lr.max(dim=1).values.clamp(min=1e-6)) * (
        tb.min(dim=1).values / tb.max(dim=1).values.clamp(min=1e-6)
    )
    return ratio.clamp(min=0).sqrt()


def centerness_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of centerness logits (M,) against targets (M,); 0 when M = 0."""
    if logits.numel() == 0:
        return logits.sum() * 0.0
    return F.binary_cross_entropy_with_logits(logits.float(), target.float())
