"""Dice + cross-entropy loss for semantic segmentation."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def dice_ce_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    dice_weight: float = 1.0,
    ce_weight: float = 1.0,
    include_background: bool = False,
    ignore_index: int = -100,
    smooth: float = 1e-5,
) -> dict[str, torch.Tensor]:
    """Soft Dice + cross-entropy over K mutually exclusive classes.

    Dice is computed per image and class on softmax probabilities, then averaged
    over (image, class) pairs; a class absent from both prediction and target of
    an image scores Dice 1 through the smoothing terms (the MONAI convention).

    Args:
        logits: (B, K, H, W) raw scores, K >= 2 (class 0 = background).
        target: (B, H, W) integer class ids in [0, K) or ``ignore_index``.
        dice_weight: weight of the Dice term.
        ce_weight: weight of the cross-entropy term.
        include_background: include class 0 in the Dice average.
        ignore_index: target value excluded from both terms.
        smooth: Dice numerator/denominator smoothing.

    Returns:
        {"loss", "dice_loss", "ce_loss"} scalars.

    Raises:
        ValueError: shape mismatch, K < 2, or a label outside [0, K).
    """
    if logits.ndim != 4 or logits.shape[1] < 2:
        raise ValueError(f"logits should be (B, K>=2, H, W), got {tuple(logits.shape)}")
    b, k, h, w = logits.shape
    if target.shape != (b, h, w):
        raise ValueError(f"target should be {(b, h, w)} class ids, got {tuple(target.shape)}")
    target = target.long()
    valid = target != ignore_index  # (B, H, W)
    if valid.any():
        vals = target[valid]
        if int(vals.min()) < 0 or int(vals.max()) >= k:
            raise ValueError(f"segmentation labels must be in [0, {k}) or {ignore_index}; found {vals.unique().tolist()}")
    logits = logits.float()
    ce = F.cross_entropy(logits, target, ignore_index=ignore_index) if valid.any() else logits.sum() * 0.0

    probs = logits.softmax(dim=1)  # (B, K, H, W)
    safe_target = torch.where(valid, target, torch.zeros_like(target))
    onehot = F.one_hot(safe_target, k).permute(0, 3, 1, 2).float()  # (B, K, H, W)
    vmask = valid.unsqueeze(1).float()  # (B, 1, H, W)
    probs, onehot = probs * vmask, onehot * vmask
    inter = (probs * onehot).sum(dim=(2, 3))  # (B, K)
    denom = probs.sum(dim=(2, 3)) + onehot.sum(dim=(2, 3))  # (B, K)
    dice = (2.0 * inter + smooth) / (denom + smooth)  # (B, K)
    if not include_background:
        dice = dice[:, 1:]
    dice_loss = 1.0 - dice.mean()
    loss = dice_weight * dice_loss + ce_weight * ce
    return {"loss": loss, "dice_loss": dice_loss, "ce_loss": ce}
