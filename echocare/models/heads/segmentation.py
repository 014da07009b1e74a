"""SwinUNETR-style segmentation decoder over a backbone's feature pyramid (:mod:`echocare.models.heads.unetr`):
per-pixel class logits at full resolution, Dice + CE loss."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from echocare.losses.segmentation import dice_ce_loss
from echocare.models.heads.common import require_keys
from echocare.models.heads.unetr import UnetrPyramidDecoder


class SegmentationHead(UnetrPyramidDecoder):
    """UNETR/SwinUNETR decoder producing (B, K, H, W) logits.

    Args:
        feature_info: backbone feature description (strides must be powers of two).
        num_classes: K including background (binary segmentation: K = 2).
        in_chans: channels of the input image (for the full-resolution stem).
        feature_size: decoder width at full resolution.
        norm_name: MONAI norm name for the conv blocks.
        dice_weight: weight of Dice in the loss.
        ce_weight: weight of cross-entropy in the loss.
        include_background: include class 0 in the Dice average.
        ignore_index: target value ignored by the loss.
        image_stem: decode the finest scales from conv blocks on the image (SwinUNETR); False decodes
            from backbone features only (see :mod:`echocare.models.heads.unetr`).

    Forward: ``features`` (list of NCHW maps), ``image`` (B, C, H, W) →
    ``{"logits": (B, K, H, W)}``. Targets for :meth:`loss`: ``{"mask": (B, H, W) long}``.
    """

    task = "segmentation"

    def __init__(
        self,
        feature_info: Any,
        num_classes: int,
        in_chans: int = 1,
        feature_size: int = 32,
        norm_name: str = "instance",
        dice_weight: float = 1.0,
        ce_weight: float = 1.0,
        include_background: bool = False,
        ignore_index: int = -100,
        image_stem: bool = True,
    ) -> None:
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"num_classes counts background and must be >= 2, got {num_classes}")
        self.build_decoder(feature_info, in_chans, num_classes, feature_size, norm_name, "segmentation", image_stem)
        self.num_classes = num_classes
        self.loss_kwargs = dict(
            dice_weight=dice_weight, ce_weight=ce_weight, include_background=include_background,
            ignore_index=ignore_index,
        )

    def forward(self, features: Sequence[torch.Tensor], image: torch.Tensor) -> dict[str, torch.Tensor]:
        """Decode to full-resolution logits (B, K, H, W)."""
        return {"logits": self.decode(features, image)}  # (B, K, H, W)

    def loss(self, outputs: Mapping[str, torch.Tensor], targets: Mapping[str, Any]) -> dict[str, Any]:
        """Dice + CE on ``targets["mask"]`` (B, H, W)."""
        require_keys(targets, ["mask"], "segmentation")
        parts = dice_ce_loss(outputs["logits"], targets["mask"], **self.loss_kwargs)
        logs = {"dice_loss": parts["dice_loss"].detach(), "ce_loss": parts["ce_loss"].detach()}
        return {"loss": parts["loss"], "logs": logs}

    @torch.no_grad()
    def predict(self, outputs: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Metric-ready outputs: ``probs`` (B, K, H, W) and ``mask`` (B, H, W) class ids."""
        logits = outputs["logits"].float()
        return {"probs": logits.softmax(dim=1), "mask": logits.argmax(dim=1)}
