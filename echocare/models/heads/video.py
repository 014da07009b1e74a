"""Video classification in the WAUVE style (seed 004).

A video is cut into fixed-length clips of adjacent frames (WAUVE: 8 frames,
non-overlapping, in chronological order). Each clip is classified from per-frame
backbone embeddings + a temporal module; the video score is the mean of the clip
probabilities. Videos shorter than one clip are rejected (WAUVE drops them) unless
``pad_short=True``; trailing frames that do not fill a clip are left out and
counted in the result.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from echocare.models.heads.classification import class_probabilities, classification_loss
from echocare.models.heads.common import global_pool, parse_feature_info, require_keys
from echocare.models.heads.temporal import TemporalAttentionPool

logger = logging.getLogger(__name__)


class VideoClassificationHead(nn.Module):
    """Clip classifier: per-frame pooled features → temporal attention pool → linear.

    Args:
        feature_info: backbone feature description.
        num_classes: K; 1 = a single binary logit (risk score = sigmoid).
        embed_dim: temporal width.
        num_heads: temporal attention heads.
        temporal_depth: temporal transformer layers.
        dropout: dropout before the classifier.
        label_smoothing: cross-entropy label smoothing (K > 1).

    Forward: ``features`` of the B*T frames, ``image`` the clip batch (B, T, C, H, W)
    → ``{"logits": (B, K), "frame_weights": (B, T)}``. Targets: ``{"label": (B,)}``.
    """

    task = "video_classification"

    def __init__(
        self,
        feature_info: Any,
        num_classes: int,
        embed_dim: int = 256,
        num_heads: int = 4,
        temporal_depth: int = 1,
        dropout: float = 0.0,
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.spec = parse_feature_info(feature_info)
        self.num_classes = num_classes
        self.label_smoothing = label_smoothing
        self.pool = TemporalAttentionPool(self.spec.channels[-1], embed_dim, num_heads, temporal_depth)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(embed_dim, num_classes)

    def forward(self, features: Sequence[torch.Tensor], image: torch.Tensor) -> dict[str, torch.Tensor]:
        """Classify clips (B, T, C, H, W) from their frames' features (B*T, C_i, h_i, w_i)."""
        if image.ndim != 5:
            raise ValueError(f"video classification expects clips (B, T, C, H, W), got {tuple(image.shape)}")
        b, t = image.shape[:2]
        emb = global_pool(features[-1])  # (B*T, C)
        pooled, weights = self.pool(emb.reshape(b, t, -1))  # (B, D), (B, T)
        return {"logits": self.fc(self.dropout(pooled)), "frame_weights": weights}

    def loss(self, outputs: Mapping[str, torch.Tensor], targets: Mapping[str, Any]) -> dict[str, Any]:
        """Cross-entropy (or BCE for K = 1) on clip labels; logs accuracy."""
        require_keys(targets, ["label"], "video_classification")
        return classification_loss(outputs["logits"], targets["label"], self.label_smoothing)

    @torch.no_grad()
    def predict(self, outputs: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Metric-ready clip ``probs`` (B, K) and ``label`` (B,)."""
        logits = outputs["logits"]
        label = (logits[:, 0] > 0).long() if logits.shape[-1] == 1 else logits.argmax(dim=-1)
        return {"probs": class_probabilities(logits.float()), "label": label}


def clip_starts(num_frames: int, clip_len: int, stride: int | None = None) -> list[int]:
    """Start indices of the full clips of ``clip_len`` frames every ``stride`` frames (default: non-overlapping)."""
    if clip_len < 1:
        raise ValueError(f"clip_len must be >= 1, got {clip_len}")
    step = clip_len if stride is None else stride
    if step < 1:
        raise ValueError(f"clip stride must be >= 1, got {step}")
    return list(range(0, num_frames - clip_len + 1, step))


@torch.no_grad()
def video_scores(
    model: nn.Module,
    video: torch.Tensor,
    clip_len: int = 8,
    stride: int | None = None,
    batch_size: int = 8,
    pad_short: bool = False,
) -> dict[str, Any]:
    """Score a whole video as the mean of its clip probabilities (WAUVE).

    Args:
        model: a module mapping clips (B, T, C, H, W) to a dict with ``"logits"`` (B, K),
            e.g. a :class:`~echocare.models.heads.FinetuneModel` with a video head.
            It is run in eval mode and restored to its previous mode afterwards.
        video: (T, C, H, W) frames in chronological order.
        clip_len: frames per clip.
        stride: frames between clip starts; ``None`` = ``clip_len`` (adjacent, non-overlapping).
        batch_size: clips per forward pass.
        pad_short: repeat the last frame of a video shorter than ``clip_len``
            instead of raising.

    Returns:
        ``{"score": (K,) mean clip probability, "clip_scores": (n, K), "clip_starts":
        (n,) long, "frames_left_out": int}``.

    Raises:
        ValueError: ``video`` is not 4-D, or is shorter than one clip and not ``pad_short``.
    """
    if video.ndim != 4:
        raise ValueError(f"video should be (T, C, H, W), got {tuple(video.shape)}")
    t = video.shape[0]
    if t < clip_len:
        if not pad_short:
            raise ValueError(f"video has {t} frames, fewer than one clip of {clip_len}; pass pad_short=True to pad")
        pad = video[-1:].expand(clip_len - t, *video.shape[1:])
        video = torch.cat([video, pad], dim=0)
        logger.info("padded a %d-frame video to one %d-frame clip", t, clip_len)
    starts = clip_starts(video.shape[0], clip_len, stride)
    covered = max(s + clip_len for s in starts)
    left_out = max(0, t - covered)
    if left_out:
        logger.debug("video_scores: %d trailing frames do not fill a clip and are left out", left_out)
    was_training = model.training
    model.eval()
    try:
        chunks = []
        for i in range(0, len(starts), batch_size):
            clips = torch.stack([video[s : s + clip_len] for s in starts[i : i + batch_size]])  # (b, T, C, H, W)
            logits = model(clips)["logits"]  # (b, K)
            chunks.append(class_probabilities(logits.float()))
    finally:
        model.train(was_training)
    clip_scores = torch.cat(chunks)  # (n, K)
    return {
        "score": clip_scores.mean(dim=0),
        "clip_scores": clip_scores,
        "clip_starts": torch.tensor(starts, dtype=torch.long),
        "frames_left_out": left_out,
    }
