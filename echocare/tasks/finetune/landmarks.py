"""Landmark localisation: CSV of x,y pairs; MSE, MRE and success rates in original pixels."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from echocare import metrics as M
from echocare.data.labeled.readers import read_points
from echocare.data.labeled.records import Record
from echocare.data.labeled.scan import scan_landmarks
from echocare.tasks.spec import MetricOptions, TaskSpec


def head_args(num_outputs: int, temporal: bool, targets: list) -> dict[str, Any]:
    """``num_landmarks``."""
    return {"num_landmarks": num_outputs}


def collect(pred: dict[str, torch.Tensor], batch: dict[str, Any], records: list[Record],
            out: dict[str, list]) -> None:
    """Predicted points mapped back to original pixel-index coordinates, and the ground truth."""
    pts = pred["points"].float().cpu()  # (B, L, 2) model pixels
    scale = batch["scale"].cpu()[:, None, :]  # (B, 1, 2) original / model
    pts = (pts + 0.5) * scale - 0.5
    out.setdefault("points", []).extend(pts.numpy())
    out.setdefault("gt", []).extend(np.asarray(r.target, float) for r in records)


def metrics(pred: dict[str, list], class_names: list[str], opts: MetricOptions) -> dict[str, Any]:
    """Landmark report over visible landmarks (hidden ones counted in ``n_hidden``)."""
    pts, gt = np.stack(pred["points"]), np.stack(pred["gt"])  # (N, L, 2); hidden landmarks: NaN in gt
    return M.landmark_report(pts, gt, radii=opts.sdr_radii, landmark_names=class_names or None)


SPEC = TaskSpec(
    name="landmarks", head="landmarks", head_args=head_args, scan=scan_landmarks, read=read_points,
    collect=collect, metrics=metrics, headline=("mse", "mre", "sdr.2", "sdr.4", "sdr.10"),
    lower_is_better=frozenset({"mse", "mre"}), hflip_safe=False,  # a flip swaps left/right landmarks
    description="landmark localisation (CSV of x,y pairs)",
)
