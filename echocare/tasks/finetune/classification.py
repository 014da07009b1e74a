"""Image classification: class folders or a CSV; accuracy, macro-F1, AUC (bootstrap CIs)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from echocare import metrics as M
from echocare.data.labeled.readers import read_class
from echocare.data.labeled.records import Record
from echocare.data.labeled.scan import scan_classification
from echocare.tasks.spec import MetricOptions, TaskSpec


def class_head_args(num_outputs: int, temporal: bool, targets: list) -> dict[str, Any]:
    """``num_classes`` only."""
    return {"num_classes": num_outputs}


def collect_probs(pred: dict[str, torch.Tensor], batch: dict[str, Any], records: list[Record],
                  out: dict[str, list]) -> None:
    """Class probabilities (a single binary logit becomes two columns), labels and item paths."""
    probs = pred["probs"].float().cpu()  # (B, C) or (B, 1)
    if probs.shape[1] == 1:
        probs = torch.cat([1 - probs, probs], dim=1)
    out.setdefault("probs", []).extend(probs.numpy())
    out.setdefault("labels", []).extend(int(r.target) for r in records)
    out.setdefault("video", []).extend(r.path for r in records)


def class_report(y: np.ndarray, p: np.ndarray, class_names: list[str], opts: MetricOptions) -> dict[str, Any]:
    """Classification report of labels ``y`` (N,) and probabilities ``p`` (N, C)."""
    names = class_names if len(class_names) == p.shape[1] else None
    return M.classification_report(y, p, ci=opts.ci, n_bootstrap=opts.n_bootstrap, seed=opts.seed,
                                   class_names=names)


def metrics(pred: dict[str, list], class_names: list[str], opts: MetricOptions) -> dict[str, Any]:
    """Per-image classification report."""
    return class_report(np.asarray(pred["labels"]), np.stack(pred["probs"]), class_names, opts)


def class_of(record: Record) -> int:
    """The record's class index."""
    return int(record.target)


SPEC = TaskSpec(
    name="classification", head="classification", head_args=class_head_args, scan=scan_classification,
    read=read_class, collect=collect_probs, metrics=metrics, headline=("accuracy", "macro_f1", "auc"),
    class_of=class_of, affine_safe=True, description="image classification (class folders or CSV)",
)
