"""Image classification head: mean pooling over the last stage + linear layer.

Used both for linear probing (backbone frozen, see
:meth:`echocare.models.heads.FinetuneModel.freeze_backbone`) and full fine-tuning.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from echocare.models.heads.common import global_pool, parse_feature_info, require_keys


def class_probabilities(logits: torch.Tensor) -> torch.Tensor:
    """Probabilities from classification logits.

    One logit (K = 1) is a binary classifier: ``sigmoid`` gives p(positive), shape
    (B, 1). Otherwise softmax over the K classes.
    """
    return torch.sigmoid(logits) if logits.shape[-1] == 1 else logits.softmax(dim=-1)


def classification_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    label_smoothing: float = 0.0,
    class_weights: torch.Tensor | None = None,
) -> dict[str, Any]:
    """Cross-entropy (K > 1) or binary cross-entropy (K = 1) with accuracy logged.

    Args:
        logits: (B, K).
        labels: (B,) integer class ids in [0, K) (for K = 1: 0 or 1).
        label_smoothing: softmax label smoothing (K > 1 only).
        class_weights: optional (K,) weights for cross-entropy.

    Returns:
        {"loss": scalar, "logs": {"acc": float tensor}}.

    Raises:
        ValueError: labels of the wrong shape or out of range.
    """
    if labels.ndim != 1 or labels.shape[0] != logits.shape[0]:
        raise ValueError(f"labels should be ({logits.shape[0]},) class ids, got {tuple(labels.shape)}")
    labels = labels.long()
    num_classes = max(int(logits.shape[-1]), 2)
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise ValueError(f"class labels must lie in [0, {num_classes}), got {labels.tolist()}")
    if logits.shape[-1] == 1:
        # logits: (B, 1) binary logit
        loss = F.binary_cross_entropy_with_logits(logits[:, 0].float(), labels.float())
        pred = (logits[:, 0] > 0).long()
    else:
        weight = None if class_weights is None else class_weights.to(logits.device, torch.float32)
        loss = F.cross_entropy(logits.float(), labels, weight=weight, label_smoothing=label_smoothing)
        pred = logits.argmax(dim=-1)
    acc = (pred == labels).float().mean().detach()
    return {"loss": loss, "logs": {"acc": acc}}


class ClassificationHead(nn.Module):
    """Global-average-pooled last stage → dropout → linear.

    Args:
        feature_info: backbone feature description (see ``parse_feature_info``).
        num_classes: K; 1 means a single binary logit (sigmoid / BCE).
        dropout: dropout probability before the linear layer.
        feature_index: which stage to pool (default the last one).
        label_smoothing: cross-entropy label smoothing.
        class_weights: optional per-class loss weights (length K).

    Forward: ``features`` (list of NCHW maps), ``image`` (B, C, H, W) →
    ``{"logits": (B, K), "embedding": (B, C_last)}``.
    Targets for :meth:`loss`: ``{"label": (B,) long}``.
    """

    task = "classification"

    def __init__(
        self,
        feature_info: Any,
        num_classes: int,
        dropout: float = 0.0,
        feature_index: int = -1,
        label_smoothing: float = 0.0,
        class_weights: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        spec = parse_feature_info(feature_info)
        self.spec = spec
        self.num_classes = num_classes
        self.feature_index = feature_index
        self.label_smoothing = label_smoothing
        in_ch = spec.channels[feature_index]
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(in_ch, num_classes)
        nn.init.trunc_normal_(self.fc.weight, std=0.01)
        nn.init.zeros_(self.fc.bias)
        if class_weights is not None and len(class_weights) != max(num_classes, 2):
            raise ValueError(f"class_weights has {len(class_weights)} entries for {num_classes} classes")
        self.register_buffer(
            "class_weights",
            None if class_weights is None else torch.tensor(list(class_weights), dtype=torch.float32),
            persistent=False,
        )

    def forward(self, features: Sequence[torch.Tensor], image: torch.Tensor) -> dict[str, torch.Tensor]:
        """Pool and classify. ``image`` is only used for its batch size check."""
        x = features[self.feature_index]  # (B, C, h, w)
        if x.shape[0] != image.shape[0]:
            raise ValueError(f"feature batch {x.shape[0]} != image batch {image.shape[0]}")
        emb = global_pool(x)  # (B, C)
        logits = self.fc(self.dropout(emb))  # (B, K)
        return {"logits": logits, "embedding": emb}

    def loss(self, outputs: Mapping[str, torch.Tensor], targets: Mapping[str, Any]) -> dict[str, Any]:
        """Cross-entropy on ``targets["label"]``; logs accuracy."""
        require_keys(targets, ["label"], "classification")
        return classification_loss(
            outputs["logits"], targets["label"], self.label_smoothing, self.class_weights
        )

    @torch.no_grad()
    def predict(self, outputs: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Metric-ready outputs: ``probs`` (B, K) and ``label`` (B,)."""
        logits = outputs["logits"]
        probs = class_probabilities(logits.float())
        label = (logits[:, 0] > 0).long() if logits.shape[-1] == 1 else logits.argmax(dim=-1)
        return {"probs": probs, "label": label}
