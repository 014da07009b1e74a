"""Detection metrics (seed 003 §4.3): box AP (COCO-style, all-point interpolation) and CTR precision.

Inputs follow the torchvision / torchmetrics convention, one entry per image:

* ``preds[i]   = {"boxes": (n, 4), "scores": (n,), "labels": (n,)}``
* ``targets[i] = {"boxes": (m, 4), "labels": (m,)}``

Boxes are ``xyxy`` pixel coordinates by default (``box_format="xywh"`` is accepted). Arrays may be
numpy or torch.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from echocare.metrics._common import as_array, check_finite

__all__ = [
    "COCO_IOU_THRESHOLDS",
    "average_precision",
    "box_iou",
    "cardiothoracic_ratio",
    "ctr_precision",
    "ctr_report",
    "detection_report",
    "minor_axis_length",
]

logger = logging.getLogger(__name__)

COCO_IOU_THRESHOLDS: tuple[float, ...] = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))


def _boxes(x: Any, name: str, box_format: str = "xyxy") -> np.ndarray:
    b = as_array(x, name)
    if b.size == 0:
        b = b.reshape(0, 4)
    if b.ndim != 2 or b.shape[1] != 4:
        raise ValueError(f"{name} must be (n, 4) boxes, got shape {tuple(b.shape)}")
    check_finite(b, name)
    if box_format == "xywh":
        b = np.concatenate([b[:, :2], b[:, :2] + b[:, 2:]], axis=1)
    elif box_format != "xyxy":
        raise ValueError(f"box_format must be 'xyxy' or 'xywh', got {box_format!r}")
    if np.any(b[:, 2] < b[:, 0]) or np.any(b[:, 3] < b[:, 1]):
        raise ValueError(f"{name} has boxes with x2 < x1 or y2 < y1 (expected {box_format})")
    return b


def box_iou(a: Any, b: Any) -> np.ndarray:
    """IoU matrix ``(n, m)`` of ``xyxy`` boxes: IoU = |A ∩ B| / |A ∪ B| (0 when the union is empty)."""
    a, b = _boxes(a, "a"), _boxes(b, "b")
    lt = np.maximum(a[:, None, :2], b[None, :, :2])  # (n, m, 2)
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(axis=2)
    area_a = (a[:, 2:] - a[:, :2]).prod(axis=1)
    area_b = (b[:, 2:] - b[:, :2]).prod(axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def average_precision(recall: np.ndarray, precision: np.ndarray) -> float:
    """All-point interpolated AP = sum_k (r_k - r_{k-1}) * max_{r >= r_k} precision(r).

    Args:
        recall: Cumulative recall after each ranked detection (non-decreasing).
        precision: Cumulative precision after each ranked detection.
    """
    mrec = np.concatenate([[0.0], recall, [1.0]])
    mpre = np.concatenate([[0.0], precision, [0.0]])
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]  # precision envelope
    steps = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(np.sum((mrec[steps + 1] - mrec[steps]) * mpre[steps + 1]))


def _parse(preds: Sequence[Mapping[str, Any]], targets: Sequence[Mapping[str, Any]], box_format: str):
    if len(preds) != len(targets):
        raise ValueError(f"preds has {len(preds)} images but targets has {len(targets)}")
    parsed = []
    for i, (p, t) in enumerate(zip(preds, targets, strict=True)):
        for key, d, name in (("boxes", p, "preds"), ("scores", p, "preds"), ("labels", p, "preds"),
                             ("boxes", t, "targets"), ("labels", t, "targets")):
            if key not in d:
                raise ValueError(f"{name}[{i}] has no {key!r} entry (keys: {sorted(d)})")
        pb = _boxes(p["boxes"], f"preds[{i}]['boxes']", box_format)
        ps = as_array(p["scores"], f"preds[{i}]['scores']").reshape(-1)
        pl = as_array(p["labels"], f"preds[{i}]['labels']").reshape(-1).astype(np.int64)
        tb = _boxes(t["boxes"], f"targets[{i}]['boxes']", box_format)
        tl = as_array(t["labels"], f"targets[{i}]['labels']").reshape(-1).astype(np.int64)
        if not len(pb) == len(ps) == len(pl):
            raise ValueError(f"preds[{i}]: {len(pb)} boxes, {len(ps)} scores, {len(pl)} labels differ")
        if len(tb) != len(tl):
            raise ValueError(f"targets[{i}]: {len(tb)} boxes but {len(tl)} labels")
        parsed.append((pb, ps, pl, tb, tl))
    return parsed


def _class_ap(parsed: list, c: int, thresholds: Sequence[float], max_dets: int | None = None) -> list[float]:
    """AP of class ``c`` at each IoU threshold (greedy COCO matching, highest score first); only the
    ``max_dets`` highest-scoring detections of class ``c`` in each image count (None: all)."""
    n_gt = sum(int((tl == c).sum()) for *_, tl in parsed)
    dets = []  # (score, image, det row) for class c
    ious = []
    for i, (pb, ps, pl, tb, tl) in enumerate(parsed):
        keep = np.flatnonzero(pl == c)
        if max_dets is not None and len(keep) > max_dets:  # pycocotools' maxDets: per image and class
            keep = keep[np.argsort(-ps[keep], kind="stable")[:max_dets]]
        ious.append(box_iou(pb[keep], tb[tl == c]) if len(keep) else np.zeros((0, int((tl == c).sum()))))
        dets.extend((ps[k], i, j) for j, k in enumerate(keep))
    dets.sort(key=lambda d: -d[0])  # stable: ties keep input order
    aps = []
    for thr in thresholds:
        matched = [np.zeros(iou.shape[1], dtype=bool) for iou in ious]
        tp = np.zeros(len(dets))
        for r, (_, i, j) in enumerate(dets):
            cand = np.where(matched[i], -1.0, ious[i][j])
            if cand.size and cand.max() >= thr:
                matched[i][int(np.argmax(cand))] = True
                tp[r] = 1.0
        ctp = np.cumsum(tp)
        rec = ctp / n_gt
        prec = ctp / np.arange(1, len(dets) + 1)
        aps.append(average_precision(rec, prec) if len(dets) else 0.0)
    return aps


def detection_report(
    preds: Sequence[Mapping[str, Any]],
    targets: Sequence[Mapping[str, Any]],
    num_classes: int | None = None,
    class_names: Sequence[str] | None = None,
    iou_thresholds: Sequence[float] = COCO_IOU_THRESHOLDS,
    box_format: str = "xyxy",
    max_dets: int | None = 100,
) -> dict[str, Any]:
    """Box AP per class and mean: AP@[.5:.95] (mean over IoU thresholds), AP@0.5 and AP@0.75.

    For each class, detections of all images are ranked by score; each is a true positive if it
    overlaps a not-yet-matched ground-truth box of its class and image with IoU >= t (the best such
    box is taken), otherwise a false positive. AP is the all-point interpolated area under the
    precision-recall curve (:func:`average_precision`). A class with no ground-truth box has no
    defined AP: it is skipped, logged and listed under ``skipped_classes``; a class with ground truth
    but no detections scores 0.

    Args:
        preds: Per-image predictions (see module docstring).
        targets: Per-image ground truth.
        num_classes: Evaluate classes ``0..num_classes-1``; default: every label seen in targets or preds.
        class_names: Names indexed by class id (default: the id as a string).
        iou_thresholds: IoU thresholds averaged for ``"ap"``; default COCO 0.50:0.05:0.95.
        box_format: ``"xyxy"`` or ``"xywh"``.
        max_dets: Per image and class, only the ``max_dets`` highest-scoring detections are ranked (the
            rest are dropped before matching), as pycocotools' ``maxDets=100``; None keeps all.

    Returns:
        ``{"ap": {name: AP@[.5:.95]}, "ap50": {...}, "ap75": {...}, "map", "map50", "map75",
        "skipped_classes", "n_images", "max_dets"}``; the means are over evaluated classes (NaN when no
        class has ground truth).
    """
    if max_dets is not None and (isinstance(max_dets, bool) or not isinstance(max_dets, int) or max_dets < 1):
        raise ValueError(f"max_dets must be a positive int or None, got {max_dets!r}")
    parsed = _parse(preds, targets, box_format)
    if num_classes is None:
        seen = set()
        for _, _, pl, _, tl in parsed:
            seen.update(pl.tolist())
            seen.update(tl.tolist())
        classes = sorted(seen)
    else:
        classes = list(range(num_classes))
    names = (lambda c: str(c)) if class_names is None else (lambda c: str(class_names[c]))
    thresholds = sorted({float(t) for t in iou_thresholds} | {0.5, 0.75})
    out: dict[str, Any] = {"ap": {}, "ap50": {}, "ap75": {}, "skipped_classes": [], "n_images": len(parsed),
                           "max_dets": max_dets}
    for c in classes:
        if sum(int((tl == c).sum()) for *_, tl in parsed) == 0:
            out["skipped_classes"].append(names(c))
            continue
        aps = dict(zip(thresholds, _class_ap(parsed, c, thresholds, max_dets), strict=True))
        out["ap"][names(c)] = float(np.mean([aps[float(t)] for t in iou_thresholds]))
        out["ap50"][names(c)] = aps[0.5]
        out["ap75"][names(c)] = aps[0.75]
    if out["skipped_classes"]:
        logger.warning("detection_report: classes %s have no ground-truth box; AP undefined, skipped",
                       out["skipped_classes"])
    for key in ("ap", "ap50", "ap75"):
        vals = list(out[key].values())
        out["m" + key] = float(np.mean(vals)) if vals else float("nan")
    return out


def minor_axis_length(objects: Any, fmt: str = "xyxy") -> np.ndarray:
    """Length of the minor axis b of each object (the short side / short diameter).

    Formats: ``"xyxy"`` axis-aligned box -> min(x2 - x1, y2 - y1); ``"xywh"`` -> min(w, h);
    ``"cxcywha"`` rotated box or ellipse (centre, full axis lengths w and h, angle) -> min(w, h).

    Returns:
        float64 array ``(N,)``.
    """
    o = as_array(objects, "objects")
    o = o[None] if o.ndim == 1 else o
    widths = {"xyxy": 4, "xywh": 4, "cxcywha": 5}
    if fmt not in widths:
        raise ValueError(f"fmt must be one of {sorted(widths)}, got {fmt!r}")
    if o.ndim != 2 or o.shape[1] != widths[fmt]:
        raise ValueError(f"objects in format {fmt!r} must be (N, {widths[fmt]}), got shape {tuple(o.shape)}")
    check_finite(o, "objects")
    w, h = (o[:, 2] - o[:, 0], o[:, 3] - o[:, 1]) if fmt == "xyxy" else (o[:, 2], o[:, 3])
    if np.any(w < 0) or np.any(h < 0):
        raise ValueError(f"objects have negative extent in format {fmt!r}")
    return np.minimum(w, h)


def cardiothoracic_ratio(cardiac: Any, thoracic: Any, fmt: str = "xyxy") -> np.ndarray:
    """Cardiothoracic diameter ratio R = b_C / b_T (minor-axis length of heart over that of thorax)."""
    b_c, b_t = minor_axis_length(cardiac, fmt), minor_axis_length(thoracic, fmt)
    if len(b_c) != len(b_t):
        raise ValueError(f"{len(b_c)} cardiac objects but {len(b_t)} thoracic objects")
    if np.any(b_t <= 0):
        raise ValueError(f"thoracic objects {np.flatnonzero(b_t <= 0).tolist()} have zero minor axis")
    return b_c / b_t


def ctr_precision(pred_cardiac: Any, pred_thoracic: Any, true_cardiac: Any, true_thoracic: Any,
                  fmt: str = "xyxy") -> float:
    """Mean CTR precision over images (seed 003 Table 2).

    P_CTR = 1 - |R_true - R_pred| / R_true (a fraction: multiply by 100 for the report's %), with
    R = b_C / b_T from :func:`cardiothoracic_ratio`; not clipped, so it is negative when the relative
    error exceeds 100%.
    """
    r_pred = cardiothoracic_ratio(pred_cardiac, pred_thoracic, fmt)
    r_true = cardiothoracic_ratio(true_cardiac, true_thoracic, fmt)
    if len(r_pred) != len(r_true):
        raise ValueError(f"{len(r_pred)} predicted ratios but {len(r_true)} ground-truth ratios")
    if np.any(r_true <= 0):
        raise ValueError(f"ground-truth CTR is 0 for images {np.flatnonzero(r_true <= 0).tolist()}")
    return float(np.mean(1.0 - np.abs(r_true - r_pred) / r_true))


def ctr_report(preds: Sequence[Mapping[str, Any]], targets: Sequence[Mapping[str, Any]], cardiac_label: int,
               thoracic_label: int, box_format: str = "xyxy") -> dict[str, Any]:
    """CTR precision from detector output: per image, the top-scoring cardiac and thoracic boxes.

    Every target must hold exactly one cardiac and one thoracic box. An image where the detector
    found no cardiac or no thoracic box scores P_CTR = 0 and is counted in ``n_missing``.

    Returns:
        ``{"ctr_precision", "n_images", "n_missing", "per_image"}``.
    """
    parsed = _parse(preds, targets, box_format)
    per_image: list[float] = []
    n_missing = 0
    for i, (pb, ps, pl, tb, tl) in enumerate(parsed):
        true = {}
        for name, lab in (("cardiac", cardiac_label), ("thoracic", thoracic_label)):
            if int((tl == lab).sum()) != 1:
                raise ValueError(f"targets[{i}] has {int((tl == lab).sum())} {name} boxes (label {lab}); need 1")
            true[name] = tb[tl == lab]
        if not ((pl == cardiac_label).any() and (pl == thoracic_label).any()):
            n_missing += 1
            per_image.append(0.0)
            continue
        top = {lab: pb[pl == lab][int(np.argmax(ps[pl == lab]))][None] for lab in (cardiac_label, thoracic_label)}
        per_image.append(ctr_precision(top[cardiac_label], top[thoracic_label], true["cardiac"],
                                       true["thoracic"]))
    if n_missing:
        logger.warning("ctr_report: %d of %d images lack a predicted cardiac or thoracic box (scored 0)",
                       n_missing, len(parsed))
    return {"ctr_precision": float(np.mean(per_image)) if per_image else float("nan"),
            "n_images": len(parsed), "n_missing": n_missing, "per_image": per_image}
