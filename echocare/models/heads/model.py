"""Backbone + task head wrapper used for fine-tuning and linear probing."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

logger = logging.getLogger(__name__)


class FinetuneModel(nn.Module):
    """Run a timm-style backbone's ``forward_intermediates`` and feed a task head.

    The backbone only needs ``forward_intermediates(x, indices=None, norm=...,
    output_fmt="NCHW", intermediates_only=True)`` (list of NCHW maps, one per
    stage, the last one normalised when ``norm=True``) and ``feature_info``.
    Inputs may be images (B, C, H, W) or frame sequences (B, T, C, H, W); the
    latter are folded into (B*T, C, H, W) for the backbone and the head gets the
    original 5-D tensor so it can unfold time.

    A head whose ``uses_backbone`` attribute is false (the 3-D CNN clip models) sees the input only:
    such a model is built with ``backbone=None`` and the head gets ``features=None``.

    Args:
        backbone: e.g. ``echocare.models.create_encoder(...)`` or ``echocare.load_backbone(...)``;
            None for a head that does not use one.
        head: a task head (``forward(features, image)``, ``loss``, ``predict``).
        feature_norm: apply the backbone's final norm to the last stage.
        freeze_backbone: start frozen (linear probe).
    """

    def __init__(self, backbone: nn.Module | None, head: nn.Module, feature_norm: bool = True,
                 freeze_backbone: bool = False) -> None:
        super().__init__()
        if backbone is None:
            if getattr(head, "uses_backbone", True):
                raise TypeError(f"{type(head).__name__} needs a backbone")
            if freeze_backbone:
                raise ValueError("a linear probe needs a backbone to freeze")
        elif not hasattr(backbone, "forward_intermediates"):
            raise TypeError(f"{type(backbone).__name__} has no forward_intermediates(); need a timm-style backbone")
        self.backbone = backbone
        self.head = head
        self.feature_norm = feature_norm
        self.backbone_frozen = False
        if freeze_backbone:
            self.freeze_backbone()

    @property
    def task(self) -> str:
        """The head's task name."""
        return str(getattr(self.head, "task", type(self.head).__name__))

    def freeze_backbone(self, frozen: bool = True) -> None:
        """Freeze (linear probe) or unfreeze the backbone.

        Frozen: no backbone parameter requires grad, the backbone stays in eval
        mode (no drop-path / dropout) even under ``model.train()``, and its
        forward runs without building a graph.
        """
        if self.backbone is None:
            raise ValueError("this model has no backbone to freeze")
        for p in self.backbone.parameters():
            p.requires_grad_(not frozen)
        self.backbone_frozen = frozen
        self.backbone.train(self.training and not frozen)
        logger.info("backbone %s", "frozen" if frozen else "trainable")

    def train(self, mode: bool = True) -> FinetuneModel:
        """Set train/eval mode, keeping a frozen backbone in eval mode."""
        super().train(mode)
        if self.backbone_frozen and self.backbone is not None:
            self.backbone.eval()
        return self

    def features(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Backbone NCHW maps for (B, C, H, W) images (one per stage, shallow first)."""
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.backbone_frozen):
            feats = self.backbone.forward_intermediates(
                images, indices=None, norm=self.feature_norm, output_fmt="NCHW", intermediates_only=True
            )
        return list(feats)

    def forward(self, images: torch.Tensor) -> dict[str, Any]:
        """Head outputs for images (B, C, H, W) or sequences (B, T, C, H, W)."""
        if self.backbone is None:
            return self.head(None, images)
        if images.ndim == 5:
            b, t = images.shape[:2]
            feats = self.features(images.reshape(b * t, *images.shape[2:]))  # maps of (B*T, C_i, h_i, w_i)
        elif images.ndim == 4:
            feats = self.features(images)
        else:
            raise ValueError(f"images should be (B, C, H, W) or (B, T, C, H, W), got {tuple(images.shape)}")
        return self.head(feats, images)

    def loss(self, outputs: Mapping[str, Any], targets: Mapping[str, Any]) -> dict[str, Any]:
        """The head's ``{"loss", "logs"}``."""
        return self.head.loss(outputs, targets)

    @torch.no_grad()
    def predict(self, images: torch.Tensor, **kwargs: Any) -> Any:
        """Metric-ready predictions (the head's ``predict``, given ``kwargs``) for a batch; no gradients."""
        return self.head.predict(self.forward(images), **kwargs)
