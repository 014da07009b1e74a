"""``create_head(task, feature_info, **kw)``: task name → head module."""

from __future__ import annotations

from typing import Any

from torch import nn

from echocare.models.heads.classification import ClassificationHead
from echocare.models.heads.detection import DetectionHead
from echocare.models.heads.enhancement import EnhancementHead
from echocare.models.heads.landmarks import LandmarkHead
from echocare.models.heads.regression import RegressionHead
from echocare.models.heads.report import ReportHead
from echocare.models.heads.segmentation import SegmentationHead
from echocare.models.heads.video import VideoClassificationHead
from echocare.models.heads.video3d import ARCHS, Video3DHead

_HEADS: dict[str, type[nn.Module]] = {
    "classification": ClassificationHead,
    "segmentation": SegmentationHead,
    "detection": DetectionHead,
    "landmarks": LandmarkHead,
    "regression": RegressionHead,
    "video_classification": VideoClassificationHead,
    "enhancement": EnhancementHead,
    "report_generation": ReportHead,
}
#: ``clip_model`` of the video head: the Swin frame encoder + temporal transformer, or a 3-D CNN (no backbone).
CLIP_MODELS = ("swin_temporal", *ARCHS)
_ALIASES = {"cls": "classification", "seg": "segmentation", "det": "detection", "landmark": "landmarks",
            "reg": "regression", "video": "video_classification"}


def list_heads() -> list[str]:
    """Canonical task names accepted by :func:`create_head`."""
    return sorted(_HEADS)


def head_class(task: str, **kwargs: Any) -> type[nn.Module]:
    """The head class :func:`create_head` builds for ``task`` and ``kwargs``.

    ``video_classification`` with ``clip_model`` set to a 3-D CNN (see :data:`CLIP_MODELS`) is
    :class:`~echocare.models.heads.video3d.Video3DHead`, which does not use a backbone
    (``uses_backbone = False``).

    Raises:
        ValueError: unknown task or clip model.
    """
    name = _ALIASES.get(task, task)
    if name not in _HEADS:
        raise ValueError(f"unknown head task {task!r}; choose from {list_heads()} (aliases {sorted(_ALIASES)})")
    if name == "video_classification":
        clip = kwargs.get("clip_model", "swin_temporal")
        if clip not in CLIP_MODELS:
            raise ValueError(f"unknown clip_model {clip!r}; choose from {list(CLIP_MODELS)}")
        return VideoClassificationHead if clip == "swin_temporal" else Video3DHead
    return _HEADS[name]


def head_uses_backbone(task: str, **kwargs: Any) -> bool:
    """Whether the head built for ``task`` and ``kwargs`` reads backbone features."""
    return bool(getattr(head_class(task, **kwargs), "uses_backbone", True))


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
    cls = head_class(task, **kwargs)
    if cls is VideoClassificationHead:
        kwargs = {k: v for k, v in kwargs.items() if k != "clip_model"}
    return cls(feature_info, **kwargs)
