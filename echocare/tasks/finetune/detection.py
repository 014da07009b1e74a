"""Object detection: COCO JSON; AP over IoU thresholds with boxes mapped back to original pixels."""

from __future__ import annotations

from typing import Any

import numpy as np

from echocare import metrics as M
from echocare.data.labeled.readers import read_boxes
from echocare.data.labeled.records import Record
from echocare.data.labeled.scan import scan_detection
from echocare.tasks.finetune.classification import class_head_args
from echocare.tasks.spec import MetricOptions, TaskSpec


def collect(pred: list[dict[str, Any]], batch: dict[str, Any], records: list[Record], out: dict[str, list]) -> None:
    """Predicted boxes scaled to original pixels, scores, labels, and the ground truth of each item."""
    for p, r, s in zip(pred, records, batch["scale"].cpu()):
        boxes = p["boxes"].float().cpu().clone()  # (n, 4) model pixels
        boxes[:, 0::2] *= s[0]
        boxes[:, 1::2] *= s[1]
        out.setdefault("preds", []).append({"boxes": boxes.numpy(), "scores": p["scores"].cpu().numpy(),
                                            "labels": p["labels"].cpu().numpy()})
        out.setdefault("targets", []).append({"boxes": np.asarray(r.target["boxes"], float).reshape(-1, 4),
                                              "labels": np.asarray(r.target["labels"], int)})


def metrics(pred: dict[str, list], class_names: list[str], opts: MetricOptions) -> dict[str, Any]:
    """COCO-style AP report."""
    return M.detection_report(pred["preds"], pred["targets"], num_classes=len(class_names), class_names=class_names)


SPEC = TaskSpec(
    name="detection", head="detection", head_args=class_head_args, scan=scan_detection, read=read_boxes,
    collect=collect, metrics=metrics, headline=("map", "map50"), names_must_match=True,
    description="object detection (COCO JSON)",
)
