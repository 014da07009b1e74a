"""Segmentation metrics (seed 003 §4.3): Dice similarity coefficient (DSC) and normalised surface Dice (NSD).

Both are computed per image and per class from integer label maps, with MONAI's ``compute_dice`` and
``compute_surface_dice`` doing the arithmetic on one-hot ``(B, C, H, W)`` tensors.

Empty masks (documented convention, applied identically to DSC and NSD, per image and class):

* ground truth and prediction both empty -> 1.0 (nothing to find, nothing found);
* exactly one of them empty              -> 0.0.

Class scores are the mean over images; the ``mean_*`` entries are the mean over foreground classes
(class 0 is background and excluded unless ``include_background=True``).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from monai.metrics import compute_dice, compute_surface_dice

from echocare.metrics._common import as_array

__all__ = ["dice_per_class", "nsd_per_class", "segmentation_report"]

Spacing = float | Sequence[float] | Sequence[Sequence[float]] | None


def _label_maps(pred_labels: Any, gt_labels: Any, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate label maps and return one-hot float tensors ``(B, C, H, W)``."""
    pred = as_array(pred_labels, "pred_labels")
    gt = as_array(gt_labels, "gt_labels")
    if pred.shape != gt.shape:
        raise ValueError(f"pred_labels shape {tuple(pred.shape)} != gt_labels shape {tuple(gt.shape)}")
    if pred.ndim == 2:
        pred, gt = pred[None], gt[None]
    if pred.ndim != 3:
        raise ValueError(f"label maps must be (H, W) or (B, H, W), got shape {tuple(pred.shape)}")
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2 (background + at least one class), got {num_classes}")
    for name, arr in (("pred_labels", pred), ("gt_labels", gt)):
        bad = (arr < 0) | (arr >= num_classes) | (arr != np.round(arr))
        if bad.any():
            raise ValueError(f"{name} holds values outside the integer range [0, {num_classes - 1}]: "
                             f"{np.unique(arr[bad])[:5].tolist()}")
    eye = torch.eye(num_classes, dtype=torch.float32)
    # (B, H, W) -> (B, H, W, C) -> (B, C, H, W)
    pred_oh = eye[torch.from_numpy(pred.astype(np.int64))].permute(0, 3, 1, 2).contiguous()
    gt_oh = eye[torch.from_numpy(gt.astype(np.int64))].permute(0, 3, 1, 2).contiguous()
    return pred_oh, gt_oh


def _empty_rule(pred_oh: torch.Tensor, gt_oh: torch.Tensor, values: torch.Tensor) -> np.ndarray:
    """Apply the empty-mask convention to a ``(B, C)`` score table."""
    pred_any = pred_oh.flatten(2).any(dim=2)  # (B, C)
    gt_any = gt_oh.flatten(2).any(dim=2)
    out = values.clone().double()
    out[~pred_any & ~gt_any] = 1.0
    out[pred_any ^ gt_any] = 0.0
    return out.numpy()


def dice_per_class(pred_labels: Any, gt_labels: Any, num_classes: int) -> np.ndarray:
    """DSC per image and class: DSC = 2 |X ∩ Y| / (|X| + |Y|), X prediction, Y ground truth.

    Args:
        pred_labels: Predicted label map ``(H, W)`` or ``(B, H, W)`` with values in ``[0, num_classes)``.
        gt_labels: Ground-truth label map of the same shape.
        num_classes: Number of classes including background 0.

    Returns:
        float64 array ``(B, num_classes)`` (background included as column 0); empty-mask convention
        of the module docstring.
    """
    pred_oh, gt_oh = _label_maps(pred_labels, gt_labels, num_classes)
    dsc = compute_dice(pred_oh, gt_oh, include_background=True, ignore_empty=False)
    return _empty_rule(pred_oh, gt_oh, torch.nan_to_num(dsc, nan=0.0))


def _spacing_per_image(spacing: Spacing, batch: int) -> list[tuple[float, float]] | None:
    """Normalise ``spacing`` to one ``(sy, sx)`` pair per image (see :func:`nsd_per_class`).

    Raises:
        ValueError: any other shape, or a non-finite / non-positive value.
    """
    if spacing is None:
        return None
    s = np.asarray(spacing, dtype=np.float64)
    if s.ndim == 0:
        pairs = np.full((batch, 2), float(s))
    elif s.shape == (2,):
        pairs = np.broadcast_to(s, (batch, 2))
    elif s.ndim == 2 and s.shape[1] == 2:
        if s.shape[0] != batch:
            raise ValueError(f"per-image spacing has {s.shape[0]} (sy, sx) pairs for {batch} images")
        pairs = s
    else:
        raise ValueError(f"spacing must be a scalar, one (sy, sx) pair, or a list of one (sy, sx) pair per image; "
                         f"got shape {tuple(s.shape)} (per-image scalars are not accepted: write [[s, s], ...])")
    if not np.all(np.isfinite(pairs)) or np.any(pairs <= 0):
        raise ValueError(f"spacing must be finite and > 0, got {pairs.ravel()[:4].tolist()}")
    return [(float(a), float(b)) for a, b in pairs]


def nsd_per_class(
    pred_labels: Any,
    gt_labels: Any,
    num_classes: int,
    tolerance: float | Sequence[float] = 2.0,
    spacing: Spacing = None,
) -> np.ndarray:
    """Normalised surface Dice per image and class.

    NSD = (|∂X ∩ ∂Y_ε| + |∂Y ∩ ∂X_ε|) / (|∂X| + |∂Y|), where ∂X, ∂Y are the boundary pixels of the
    prediction and ground truth (pixels of the mask with a 4-neighbour outside it) and ∂Y_ε the set
    of points within Euclidean distance ε of ∂Y. Equivalently: the fraction of boundary pixels of
    both masks whose distance to the other boundary is <= ε.

    Args:
        pred_labels: Predicted label map ``(H, W)`` or ``(B, H, W)``.
        gt_labels: Ground-truth label map of the same shape.
        num_classes: Number of classes including background 0.
        tolerance: ε, one value or one per class (length ``num_classes``, background entry unused).
            In pixels when ``spacing`` is ``None``, otherwise in the spacing's unit (e.g. mm; the report
            uses ε = 2 mm).
        spacing: Pixel size: a scalar (isotropic, every image), one ``(sy, sx)`` pair (every image), or a
            list of one ``(sy, sx)`` pair per image; ``None`` means 1 (distances in pixels). A flat list
            is always one pair, never per-image scalars (with two images that would be ambiguous).

    Returns:
        float64 array ``(B, num_classes)`` (column 0 = background); empty-mask convention of the module
        docstring.
    """
    pred_oh, gt_oh = _label_maps(pred_labels, gt_labels, num_classes)
    tol = np.broadcast_to(np.asarray(tolerance, dtype=np.float64), (num_classes,)) \
        if np.ndim(tolerance) == 0 else np.asarray(tolerance, dtype=np.float64)
    if tol.shape != (num_classes,):
        raise ValueError(f"tolerance must be a scalar or have {num_classes} entries, got {len(tol)}")
    if not np.all(np.isfinite(tol)) or np.any(tol < 0):
        raise ValueError(f"tolerance must be finite and >= 0, got {tol.tolist()}")
    spacing = _spacing_per_image(spacing, int(pred_oh.shape[0]))
    with warnings.catch_warnings():  # MONAI warns on empty masks; the empty convention handles them
        warnings.simplefilter("ignore")
        nsd = compute_surface_dice(pred_oh, gt_oh, class_thresholds=tol.tolist(), include_background=True,
                                   spacing=spacing)
    return _empty_rule(pred_oh, gt_oh, torch.nan_to_num(nsd, nan=0.0))


def segmentation_report(
    pred_labels: Any,
    gt_labels: Any,
    num_classes: int,
    tolerance: float | Sequence[float] = 2.0,
    spacing: Spacing = None,
    class_names: Sequence[str] | None = None,
    include_background: bool = False,
) -> dict[str, Any]:
    """Per-class and mean DSC and NSD over a set of images.

    Args:
        pred_labels: Predicted label maps ``(B, H, W)`` (or one ``(H, W)``).
        gt_labels: Ground-truth label maps, same shape.
        num_classes: Number of classes including background 0.
        tolerance: NSD tolerance ε (pixels, or mm with ``spacing``); scalar or per class.
        spacing: Pixel spacing, see :func:`nsd_per_class`.
        class_names: Names of all ``num_classes`` classes (default ``"0".."C-1"``).
        include_background: Also score class 0.

    Returns:
        ``{"dice": {name: float}, "nsd": {name: float}, "mean_dice", "mean_nsd", "n_images",
        "tolerance", "tolerance_unit"}``, class scores averaged over images.
    """
    names = [str(c) for c in range(num_classes)] if class_names is None else [str(n) for n in class_names]
    if len(names) != num_classes:
        raise ValueError(f"class_names has {len(names)} entries but num_classes={num_classes}")
    dsc = dice_per_class(pred_labels, gt_labels, num_classes)
    nsd = nsd_per_class(pred_labels, gt_labels, num_classes, tolerance=tolerance, spacing=spacing)
    classes = range(0 if include_background else 1, num_classes)
    dice_c = {names[c]: float(dsc[:, c].mean()) for c in classes}
    nsd_c = {names[c]: float(nsd[:, c].mean()) for c in classes}
    return {
        "dice": dice_c,
        "nsd": nsd_c,
        "mean_dice": float(np.mean(list(dice_c.values()))),
        "mean_nsd": float(np.mean(list(nsd_c.values()))),
        "n_images": int(dsc.shape[0]),
        "tolerance": np.asarray(tolerance, dtype=np.float64).tolist(),
        "tolerance_unit": "px" if spacing is None else "spacing unit (e.g. mm)",
    }
