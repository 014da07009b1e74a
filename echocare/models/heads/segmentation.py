"""SwinUNETR-style segmentation decoder over a backbone's feature pyramid.

The decoder works on a chain of scales 1, 2, 4, ..., S (S = deepest backbone
stride). Every scale gets a skip tensor:

* scale 1: a residual conv block on the input image (SwinUNETR's ``encoder0``);
* a scale where the backbone has a feature map: a residual conv block on it
  (SwinUNETR's ``encoder1..4`` / ``encoder10`` for the deepest one);
* a scale the backbone lacks (stride 2 for a patch-4 Swin): a stride-2 residual
  conv block on the previous skip, so the full-resolution stem reaches it.

The deepest skip is upsampled by ``UnetrUpBlock`` (transposed conv ×2, concat
skip, residual block) scale by scale back to full resolution, then
``UnetOutBlock`` gives per-pixel logits. Channels follow SwinUNETR:
``feature_size * max(1, s / 2)`` at scale ``s``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from monai.networks.blocks import UnetOutBlock, UnetrBasicBlock, UnetrUpBlock
from torch import nn

from echocare.losses.segmentation import dice_ce_loss
from echocare.models.heads.common import check_features, parse_feature_info, require_keys


class SegmentationHead(nn.Module):
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
    ) -> None:
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"num_classes counts background and must be >= 2, got {num_classes}")
        spec = parse_feature_info(feature_info)
        for r in spec.reductions:
            if r < 1 or r & (r - 1):
                raise ValueError(f"segmentation needs power-of-two feature strides, got {list(spec.reductions)}")
        self.spec = spec
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.loss_kwargs = dict(
            dice_weight=dice_weight, ce_weight=ce_weight, include_background=include_background,
            ignore_index=ignore_index,
        )
        # scales 1, 2, 4, ..., deepest stride
        self.scales: list[int] = []
        s = 1
        while s <= spec.reductions[-1]:
            self.scales.append(s)
            s *= 2

        def width(scale: int) -> int:
            return feature_size * max(1, scale // 2)

        # skip source per scale: ("image", -1), ("feature", index) or ("previous", -1)
        self.sources: list[tuple[str, int]] = []
        encoders = []
        for j, scale in enumerate(self.scales):
            if scale == 1:
                self.sources.append(("image", -1))
                encoders.append(UnetrBasicBlock(2, in_chans, width(1), 3, 1, norm_name, res_block=True))
            elif scale in spec.reductions:
                i = spec.reductions.index(scale)
                self.sources.append(("feature", i))
                encoders.append(UnetrBasicBlock(2, spec.channels[i], width(scale), 3, 1, norm_name, res_block=True))
            else:
                self.sources.append(("previous", -1))
                prev = width(self.scales[j - 1])
                encoders.append(UnetrBasicBlock(2, prev, width(scale), 3, 2, norm_name, res_block=True))
        self.encoders = nn.ModuleList(encoders)
        # decoders[j] lifts scale j+1 to scale j
        self.decoders = nn.ModuleList(
            UnetrUpBlock(2, width(self.scales[j + 1]), width(self.scales[j]), 3, 2, norm_name, res_block=True)
            for j in range(len(self.scales) - 1)
        )
        self.out = UnetOutBlock(2, width(1), num_classes)

    def forward(self, features: Sequence[torch.Tensor], image: torch.Tensor) -> dict[str, torch.Tensor]:
        """Decode to full-resolution logits (B, K, H, W)."""
        if image.ndim != 4 or image.shape[1] != self.in_chans:
            raise ValueError(f"image should be (B, {self.in_chans}, H, W), got {tuple(image.shape)}")
        check_features(features, self.spec, (image.shape[-2], image.shape[-1]))
        skips: list[torch.Tensor] = []
        for (kind, idx), enc in zip(self.sources, self.encoders):
            if kind == "image":
                skips.append(enc(image))  # (B, F, H, W)
            elif kind == "feature":
                skips.append(enc(features[idx]))  # (B, F_s, H/s, W/s)
            else:
                skips.append(enc(skips[-1]))  # stride-2 block on the previous skip
        x = skips[-1]  # deepest scale
        for j in range(len(self.decoders) - 1, -1, -1):
            x = self.decoders[j](x, skips[j])  # (B, F_j, H/s_j, W/s_j)
        return {"logits": self.out(x)}  # (B, K, H, W)

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
