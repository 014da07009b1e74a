"""Semantic segmentation: images + class-id masks; Dice and NSD per class at the model input size."""

from __future__ import annotations

from typing import Any

import torch

from echocare import metrics as M
from echocare.data.labeled.readers import read_mask
from echocare.data.labeled.records import Record
from echocare.data.labeled.scan import scan_segmentation
from echocare.tasks.spec import MetricOptions, TaskSpec


def head_args(num_outputs: int, temporal: bool, targets: list) -> dict[str, Any]:
    """Classes incl. background; the decoder's skip from the (grayscale) input."""
    return {"num_classes": num_outputs, "in_chans": 1}


def collect(pred: dict[str, torch.Tensor], batch: dict[str, Any], records: list[Record],
            out: dict[str, list]) -> None:
    """Predicted and true masks (B, S, S) as uint8."""
    out.setdefault("pred", []).append(pred["mask"].cpu().to(torch.uint8))
    out.setdefault("gt", []).append(batch["mask"].cpu().to(torch.uint8))


def metrics(pred: dict[str, list], class_names: list[str], opts: MetricOptions) -> dict[str, Any]:
    """Dice / NSD per foreground class and their means."""
    pr, gt = torch.cat(pred["pred"]).long(), torch.cat(pred["gt"]).long()  # (N, S, S)
    return M.segmentation_report(pr, gt, len(class_names), tolerance=opts.nsd_tolerance, class_names=class_names)


SPEC = TaskSpec(
    name="segmentation", head="segmentation", head_args=head_args, scan=scan_segmentation, read=read_mask,
    collect=collect, metrics=metrics, headline=("mean_dice", "mean_nsd"),
    affine_safe=True, description="semantic segmentation (images/ + masks/ with class-id masks)",
)
