"""Video classification: clips of adjacent frames, scored per video on the mean clip probability (WAUVE)."""

from __future__ import annotations

from typing import Any

import numpy as np

from echocare.data.labeled.readers import read_clip
from echocare.data.labeled.scan import scan_video
from echocare.tasks.finetune.classification import class_head_args, class_of, class_report, collect_probs
from echocare.tasks.spec import MetricOptions, TaskSpec


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


SPEC = TaskSpec(
    name="video", head="video_classification", head_args=class_head_args, scan=scan_video, read=read_clip,
    collect=collect_probs, metrics=metrics, headline=("accuracy", "macro_f1", "auc"), class_of=class_of,
    description="video classification (class folders or CSV of videos / frame folders)",
)
