"""Regression of one or more values per image or video (CSV); MAE and RMSE."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from echocare import metrics as M
from echocare.data.labeled.readers import read_values
from echocare.data.labeled.records import Record
from echocare.data.labeled.scan import scan_regression
from echocare.tasks.spec import MetricOptions, TaskSpec


def head_args(num_outputs: int, temporal: bool, targets: list) -> dict[str, Any]:
    """Outputs, temporal pooling, and target standardisation from the training targets (if given)."""
    args: dict[str, Any] = {"num_outputs": num_outputs, "temporal": temporal}
    if targets:
        y = np.asarray(targets, dtype=float)
        args["target_mean"] = float(y.mean())
        args["target_std"] = float(max(y.std(), 1e-6))
    return args


def collect(pred: dict[str, torch.Tensor], batch: dict[str, Any], records: list[Record],
            out: dict[str, list]) -> None:
    """Predicted and true values (K,) per item."""
    v = pred["value"].float().cpu().reshape(len(records), -1)  # (B, K)
    out.setdefault("pred", []).extend(v.numpy())
    out.setdefault("gt", []).extend(np.asarray(r.target, float) for r in records)


def metrics(pred: dict[str, list], class_names: list[str], opts: MetricOptions) -> dict[str, Any]:
    """Regression report (per output and averaged when there are several)."""
    pr, gt = np.stack(pred["pred"]), np.stack(pred["gt"])  # (N, K)
    if pr.shape[1] == 1:
        return M.regression_report(gt[:, 0], pr[:, 0])
    per = {name: M.regression_report(gt[:, k], pr[:, k]) for k, name in enumerate(class_names)}
    return {"per_output": per, "mae": float(np.mean([v["mae"] for v in per.values()])),
            "rmse": float(np.mean([v["rmse"] for v in per.values()]))}


SPEC = TaskSpec(
    name="regression", head="regression", head_args=head_args, scan=scan_regression, read=read_values,
    collect=collect, metrics=metrics, headline=("mae", "rmse"), lower_is_better=frozenset({"mae", "rmse"}),
    description="regression of values per image or video (CSV)",
)
