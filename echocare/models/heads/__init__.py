"""Fine-tuning task heads over a backbone's multi-scale features.

Every head is built from the backbone's ``feature_info`` and follows one style:

* ``head(features, image) -> dict``: ``features`` is the list of NCHW maps from
  ``backbone.forward_intermediates(..., output_fmt="NCHW", intermediates_only=True)``;
  ``image`` is the model input, (B, C, H, W) or (B, T, C, H, W) for sequence heads;
* ``head.loss(outputs, targets) -> {"loss": scalar, "logs": {name: tensor}}``;
* ``head.predict(outputs)`` -> metric-ready outputs.

:class:`FinetuneModel` ties a backbone and a head together (with
``freeze_backbone()`` for linear probing); :func:`create_head` builds a head by task name.
"""

from echocare.models.heads.boxes import ellipse_to_box
from echocare.models.heads.classification import ClassificationHead, class_probabilities
from echocare.models.heads.detection import DetectionHead
from echocare.models.heads.factory import CLIP_MODELS, create_head, head_uses_backbone, list_heads
from echocare.models.heads.heatmap import decode_heatmaps, render_gaussian_heatmaps
from echocare.models.heads.landmarks import LandmarkHead
from echocare.models.heads.model import FinetuneModel
from echocare.models.heads.regression import RegressionHead
from echocare.models.heads.segmentation import SegmentationHead
from echocare.models.heads.temporal import TemporalAttentionPool
from echocare.models.heads.video import VideoClassificationHead, clip_starts, video_scores

__all__ = [
    "CLIP_MODELS",
    "ClassificationHead",
    "DetectionHead",
    "FinetuneModel",
    "LandmarkHead",
    "RegressionHead",
    "SegmentationHead",
    "TemporalAttentionPool",
    "VideoClassificationHead",
    "class_probabilities",
    "clip_starts",
    "create_head",
    "decode_heatmaps",
    "ellipse_to_box",
    "head_uses_backbone",
    "list_heads",
    "render_gaussian_heatmaps",
    "video_scores",
]
