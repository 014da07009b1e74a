"""The SwinUNETR-style pyramid decoder shared by the segmentation and enhancement heads.

The decoder works on a chain of scales 1, 2, 4, ..., S (S = deepest backbone stride). Every scale gets a
skip tensor:

* scale 1: a residual conv block on the input image (SwinUNETR's ``encoder0``);
* a scale where the backbone has a feature map: a residual conv block on it (SwinUNETR's
  ``encoder1..4`` / ``encoder10`` for the deepest one);
* a scale the backbone lacks (stride 2 for a patch-4 Swin): a stride-2 residual conv block on the
  previous skip, so the full-resolution stem reaches it.

The deepest skip is upsampled by ``UnetrUpBlock`` (transposed conv ×2, concat skip, residual block) scale by
scale back to full resolution, then ``UnetOutBlock`` maps to the output channels. Channels follow SwinUNETR:
``feature_size * max(1, s / 2)`` at scale ``s``.

``image_stem=False`` drops the image path: the scales finer than the first backbone feature map get no skip
and are reached by a transposed conv ×2 + residual block, so every output pixel is decoded from backbone
features only (what a transfer benchmark needs to see the encoder; the default stem lets the head segment
easy targets on its own).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from monai.networks.blocks import UnetOutBlock, UnetrBasicBlock, UnetrUpBlock
from torch import nn

from echocare.models.heads.common import check_features, parse_feature_info

__all__ = ["UnetrPyramidDecoder"]


class UnetrPyramidDecoder(nn.Module):
    """Base of heads that decode a backbone pyramid (+ the image) to a full-resolution map.

    Subclasses call :meth:`build_decoder` in ``__init__`` and :meth:`decode` in ``forward``; the modules are
    ``encoders``, ``decoders`` and ``out`` on the head itself (so state-dict keys name the head's parts).
    """

    def build_decoder(self, feature_info: Any, in_chans: int, out_chans: int, feature_size: int,
                      norm_name: str | tuple, what: str, image_stem: bool = True) -> None:
        """Create ``spec``, ``in_chans``, ``scales``, ``sources``, ``encoders``, ``decoders`` and ``out``.

        Raises:
            ValueError: a feature stride is not a power of two (``what`` names the head in the message).
        """
        spec = parse_feature_info(feature_info)
        for r in spec.reductions:
            if r < 1 or r & (r - 1):
                raise ValueError(f"{what} needs power-of-two feature strides, got {list(spec.reductions)}")
        self.spec = spec
        self.in_chans = in_chans
        self.scales = [2**i for i in range(spec.reductions[-1].bit_length())]  # 1, 2, 4, ..., deepest stride

        def width(scale: int) -> int:
            return feature_size * max(1, scale // 2)

        self.sources: list[tuple[str, int]] = []  # skip source per scale: ("image"|"feature"|"previous", index)
        encoders: list[nn.Module] = []
        for j, scale in enumerate(self.scales):
            if not image_stem and scale < spec.reductions[0]:
                self.sources.append(("none", -1))
                encoders.append(nn.Identity())  # (keeps encoders[j] <-> scales[j])
            elif scale == 1:
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
            if self.sources[j][0] != "none" else _UpNoSkip(width(self.scales[j + 1]), width(self.scales[j]), norm_name)
            for j in range(len(self.scales) - 1)
        )
        self.out = UnetOutBlock(2, width(1), out_chans)

    def decode(self, features: Sequence[torch.Tensor], image: torch.Tensor) -> torch.Tensor:
        """features: NCHW pyramid; image (B, C, H, W) -> (B, out_chans, H, W)."""
        if image.ndim != 4 or image.shape[1] != self.in_chans:
            raise ValueError(f"image should be (B, {self.in_chans}, H, W), got {tuple(image.shape)}")
        check_features(features, self.spec, (image.shape[-2], image.shape[-1]))
        skips: list[torch.Tensor | None] = []
        for (kind, idx), enc in zip(self.sources, self.encoders):
            if kind == "none":
                skips.append(None)
                continue
            src = image if kind == "image" else features[idx] if kind == "feature" else skips[-1]
            skips.append(enc(src))  # (B, F_s, H/s, W/s)
        x = skips[-1]  # deepest scale
        for j in range(len(self.decoders) - 1, -1, -1):
            skip = skips[j]
            x = self.decoders[j](x) if skip is None else self.decoders[j](x, skip)  # (B, F_j, H/s_j, W/s_j)
        return self.out(x)  # (B, out_chans, H, W)

    def load_decoder_state(self, state: dict[str, torch.Tensor], where: str) -> list[str]:
        """Start this head from a pretrained decoder of the same layout (``echocare.models.decoders.UnetrDecoder``).

        Args:
            state: the decoder's ``net.*`` tensors with the ``net.`` prefix removed.
            where: names the source in error messages.

        Returns:
            The keys left at their fresh initialisation: the output block (``out.*``) when its channel count
            differs (a K-class segmentation head from an image decoder).

        Raises:
            ValueError: a tensor is missing, left over or of another shape (another ``feature_size``,
                ``image_stem`` or backbone): one line naming the first difference.
        """
        parts = ("encoders.", "decoders.", "out.")  # not e.g. the enhancement head's discriminator
        own = {k: v for k, v in self.state_dict().items() if k.startswith(parts)}
        skipped = [k for k in own if k.startswith("out.") and k in state and state[k].shape != own[k].shape]
        missing = [k for k in own if k not in state]
        extra = [k for k in state if k not in own]
        if missing or extra:
            raise ValueError(f"{where}: the pretrained decoder's layout differs from this head's (missing "
                             f"{missing[:3]}, unexpected {extra[:3]}); pretrain with the head's image_stem and "
                             "the same backbone")
        for k, v in state.items():
            if k not in skipped and v.shape != own[k].shape:
                raise ValueError(f"{where}: decoder tensor {k} is {tuple(v.shape)}, the head's is "
                                 f"{tuple(own[k].shape)}; pretrain with model.decoder_dim equal to the head's "
                                 "feature_size")
        self.load_state_dict({k: v for k, v in state.items() if k not in skipped}, strict=False)
        return skipped


class _UpNoSkip(nn.Module):
    """×2 upsampling without a skip: transposed conv, then a residual conv block (``image_stem=False``)."""

    def __init__(self, in_channels: int, out_channels: int, norm_name: str | tuple) -> None:
        super().__init__()
        self.up = nn.ConvTranspose2d(in_channels, out_channels, kernel_size=2, stride=2, bias=False)
        self.block = UnetrBasicBlock(2, out_channels, out_channels, 3, 1, norm_name, res_block=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, C_in, h, w) -> (B, C_out, 2h, 2w)."""
        return self.block(self.up(x))
