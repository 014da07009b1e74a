"""Run a fine-tuned model over a labeled dataset and compute the task's metrics (``echocare.metrics``).

Predictions are mapped back to each item's *original* pixel coordinates for detection boxes and
landmarks (so AP / SDR radii are in original pixels); segmentation is scored at the model input
size (masks resized nearest). Video classification is scored per video: the mean of its clip
probabilities (WAUVE). Evaluation runs in fp32 with no augmentation, so re-running it on the same
model and items reproduces the numbers exactly.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch

from echocare.data.labeled import EpochLoader, LabeledDataset
from echocare.tasks.finetune import move_batch

logger = logging.getLogger(__name__)

HEADLINE = {
    "classification": ["accuracy", "macro_f1", "auc"],
    "video": ["accuracy", "macro_f1", "auc"],
    "segmentation": ["mean_dice", "mean_nsd"],
    "detection": ["map", "map50"],
    "landmarks": ["mse", "mre", "sdr.2", "sdr.4", "sdr.10"],
    "regression": ["mae", "rmse"],
}
LOWER_IS_BETTER = {"mse", "mre", "mae", "rmse"}

__all__ = ["HEADLINE", "LOWER_IS_BETTER", "collect_predictions", "compute_metrics", "evaluate_dataset", "headline"]


@torch.no_grad()
def collect_predictions(model: torch.nn.Module, dataset: LabeledDataset, batch_size: int = 16,
                        num_workers: int = 0, device: torch.device | str = "cpu") -> dict[str, Any]:
    """Predictions and ground truth of every item, in dataset order.

    Returns:
        Task-dependent lists: ``probs``/``labels`` (classification, video + ``video`` keys), ``pred``/``gt``
        masks, ``preds``/``targets`` (detection dicts), ``points``/``gt``/``visible`` (landmarks),
        ``pred``/``gt`` values (regression).
    """
    task = dataset.task
    was_training = model.training
    model.eval()
    loader = EpochLoader(dataset, batch_size, shuffle=False, num_workers=num_workers, drop_last=False)
    out: dict[str, list] = {}
    try:
        for batch in loader:
            batch = move_batch(batch, torch.device(device))
            pred = model.predict(batch["image"].float())
            idx = batch["index"].tolist()
            recs = [dataset.records[i] for i in idx]
            if task in ("classification", "video"):
                probs = pred["probs"].float().cpu()
                if probs.shape[1] == 1:  # one binary logit → two-column probabilities
                    probs = torch.cat([1 - probs, probs], dim=1)
                out.setdefault("probs", []).extend(probs.numpy())
                out.setdefault("labels", []).extend(int(r.target) for r in recs)
                out.setdefault("video", []).extend(r.path for r in recs)
            elif task == "segmentation":
                out.setdefault("pred", []).append(pred["mask"].cpu().to(torch.uint8))
                out.setdefault("gt", []).append(batch["mask"].cpu().to(torch.uint8))
            elif task == "detection":
                for p, r, s in zip(pred, recs, batch["scale"].cpu()):
                    boxes = p["boxes"].float().cpu().clone()
                    boxes[:, 0::2] *= s[0]
                    boxes[:, 1::2] *= s[1]
                    out.setdefault("preds", []).append({"boxes": boxes.numpy(), "scores": p["scores"].cpu().numpy(),
                                                        "labels": p["labels"].cpu().numpy()})
                    out.setdefault("targets", []).append({"boxes": np.asarray(r.target["boxes"], float).reshape(-1, 4),
                                                          "labels": np.asarray(r.target["labels"], int)})
            elif task == "landmarks":
                pts = pred["points"].float().cpu()  # (B, L, 2) model pixels
                scale = batch["scale"].cpu()[:, None, :]  # (B, 1, 2) original / model
                pts = (pts + 0.5) * scale - 0.5
                out.setdefault("points", []).extend(pts.numpy())
                out.setdefault("gt", []).extend(np.asarray(r.target, float) for r in recs)
            elif task == "regression":
                v = pred["value"].float().cpu().reshape(len(idx), -1)
                out.setdefault("pred", []).extend(v.numpy())
                out.setdefault("gt", []).extend(np.asarray(r.target, float) for r in recs)
    finally:
        model.train(was_training)
    return out


def _video_level(probs: list[np.ndarray], labels: list[int], videos: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Mean clip probability per video (WAUVE)."""
    by_video: dict[str, list[int]] = {}
    for i, v in enumerate(videos):
        by_video.setdefault(v, []).append(i)
    p = np.stack([np.mean([probs[i] for i in ids], axis=0) for ids in by_video.values()])
    y = np.asarray([labels[ids[0]] for ids in by_video.values()])
    return y, p


def compute_metrics(task: str, pred: dict[str, Any], class_names: list[str], ci: bool = True,
                    n_bootstrap: int = 1000, nsd_tolerance: float = 2.0,
                    sdr_radii: tuple[float, ...] = (2.0, 4.0, 10.0), seed: int = 0) -> dict[str, Any]:
    """The task's metric report from :func:`collect_predictions` output (JSON-able)."""
    from echocare import metrics as M

    if task in ("classification", "video"):
        if task == "video":
            y, p = _video_level(pred["probs"], pred["labels"], pred["video"])
        else:
            y, p = np.asarray(pred["labels"]), np.stack(pred["probs"])
        names = class_names if len(class_names) == p.shape[1] else None
        report = M.classification_report(y, p, ci=ci, n_bootstrap=n_bootstrap, seed=seed, class_names=names)
        if task == "video":
            report["n_clips"] = len(pred["labels"])
        return report
    if task == "segmentation":
        pr, gt = torch.cat(pred["pred"]).long(), torch.cat(pred["gt"]).long()
        return M.segmentation_report(pr, gt, len(class_names), tolerance=nsd_tolerance, class_names=class_names)
    if task == "detection":
        return M.detection_report(pred["preds"], pred["targets"], num_classes=len(class_names), class_names=class_names)
    if task == "landmarks":
        pts, gt = np.stack(pred["points"]), np.stack(pred["gt"])  # (N, L, 2); hidden landmarks: NaN in gt
        return M.landmark_report(pts, gt, radii=sdr_radii, landmark_names=class_names or None)
    if task == "regression":
        pr, gt = np.stack(pred["pred"]), np.stack(pred["gt"])  # (N, K)
        if pr.shape[1] == 1:
            return M.regression_report(gt[:, 0], pr[:, 0])
        per = {name: M.regression_report(gt[:, k], pr[:, k]) for k, name in enumerate(class_names)}
        return {"per_output": per, "mae": float(np.mean([v["mae"] for v in per.values()])),
                "rmse": float(np.mean([v["rmse"] for v in per.values()]))}
    raise ValueError(f"unknown task {task!r}")


def evaluate_dataset(model: torch.nn.Module, dataset: LabeledDataset, class_names: list[str], batch_size: int = 16,
                     num_workers: int = 0, device: torch.device | str = "cpu", **metric_kw: Any) -> dict[str, Any]:
    """:func:`collect_predictions` then :func:`compute_metrics`."""
    pred = collect_predictions(model, dataset, batch_size, num_workers, device)
    return compute_metrics(dataset.task, pred, class_names, **metric_kw)


def headline(task: str, report: dict[str, Any]) -> dict[str, float]:
    """The task's headline metrics (flattened names, e.g. ``sdr.2``) from a report."""
    from echocare.metrics import flatten_metrics

    flat = flatten_metrics(report)
    return {k: flat[k] for k in HEADLINE[task] if k in flat}
