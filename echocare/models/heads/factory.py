"""``create_head(task, feature_info, **kw)``: task name → head module."""

from __future__ import annotations

from typing import Any

from torch import nn

from echocare.models.heads.classification import ClassificationHead
from echocare.models.heads.detection import DetectionHead
from echocare.models.heads.landmarks import LandmarkHead
from echocare.models.heads.regression import RegressionHead
from echocare.models.heads.segmentation import SegmentationHead
from echocare.models.heads.video import VideoClassificationHead

_HEADS: dict[str, type[nn.Module]] = {
    "classification": ClassificationHead,
    "segmentation": SegmentationHead,
    "detection": DetectionHead,
    "landmarks": LandmarkHead,
    "regression": RegressionHead,
    "video_classification": VideoClassificationHead,
}
_ALIASES = {"cls": "classification", "seg": "segmentation", "det": "detection", "landmark": "landmarks",
            "reg": "regression", "video": "video_classification"}


def list_heads() -> list[str]:
    """Canonical task names accepted by :func:`create_head`."""
    return sorted(_HEADS)


def create_head(task: str, feature_info: Any, **kwargs: Any) -> nn.Module:
    """Build the head for ``task`` over a backbone's ``feature_info``.

    Args:
        task: one of :func:`list_heads` (aliases: cls, seg, det, landmark, reg, video).
        feature_info: ``backbone.feature_info`` (timm list of dicts) or equivalent.
        **kwargs: head constructor arguments (e.g. ``num_classes``, ``num_landmarks``).

    Raises:
        ValueError: unknown task.
        TypeError: an argument the head does not accept.
    """
    name = _ALIASES.get(task, task)
    if name not in _HEADS:
        raise ValueError(f"unknown head task {task!r}; choose from {list_heads()} (aliases {sorted(_ALIASES)})")
    return _HEADS[name](feature_info, **kwargs)
