"""Video classification: clips of adjacent frames, scored per video on the mean clip probability (WAUVE).

Two clip models, chosen by ``model.head.clip_model``: ``swin_temporal`` (default; per-frame echocare
encoder features + a temporal transformer) or a 3-D CNN without the image encoder (``i3d_r50``,
``r3d_18``, ``mc3_18``, ``r2plus1d_18``; :mod:`echocare.models.heads.video3d`). ``data.roi: scan_area``
adds the ROI stage: every clip is cropped to its scan-area box before resizing
(:mod:`echocare.data.labeled.roi`). ``recipes/finetune/video_wauve.yaml`` selects ROI + I3D-R50.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from echocare.data.labeled.readers import read_clip
from echocare.data.labeled.roi import read_clip_roi
from echocare.data.labeled.scan import scan_video
from echocare.tasks.finetune.classification import class_head_args, class_of, class_report, collect_probs
from echocare.tasks.spec import MetricOptions, RunContext, TaskSpec


def video_level(probs: list[np.ndarray], labels: list[int], videos: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Labels (V,) and mean clip probabilities (V, C) per video."""
    by_video: dict[str, list[int]] = {}
    for i, v in enumerate(videos):
        by_video.setdefault(v, []).append(i)
    p = np.stack([np.mean([probs[i] for i in ids], axis=0) for ids in by_video.values()])
    y = np.asarray([labels[ids[0]] for ids in by_video.values()])
    return y, p


def metrics(pred: dict[str, list], class_names: list[str], opts: MetricOptions) -> dict[str, Any]:
    """Per-video classification report plus the number of clips."""
    y, p = video_level(pred["probs"], pred["labels"], pred["video"])
    report = class_report(y, p, class_names, opts)
    report["n_clips"] = len(pred["labels"])
    return report


def bind(spec: TaskSpec, ctx: RunContext) -> tuple[TaskSpec, dict[str, Any]]:
    """``data.roi: scan_area`` swaps in the ROI reader; nothing to save (the config records it)."""
    if ctx.roi == "scan_area":
        return dataclasses.replace(spec, read=read_clip_roi), {}
    if ctx.roi is not None:
        raise ValueError(f"data.roi must be null or 'scan_area', got {ctx.roi!r}")
    return spec, {}


SPEC = TaskSpec(
    name="video", head="video_classification", head_args=class_head_args, scan=scan_video, read=read_clip,
    collect=collect_probs, metrics=metrics, headline=("accuracy", "macro_f1", "auc"), class_of=class_of,
    affine_safe=True, description="video classification (class folders or CSV of videos / frame folders)", bind=bind,
)
