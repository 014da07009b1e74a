"""Image decoders for masked-image pretraining.

Both decoders take the encoder's per-stage features (NCHW, strides p, 2p, 4p, 8p; the last one after the
final norm) plus the masked input image, and return a reconstruction (B, C, H, W). ``output="sigmoid"``
squashes it into [0, 1], the range of the target pixels; ``output="linear"`` returns the raw projection, as
SimMIM's head does (the loss then pulls it into range; visualisations clamp it).

* ``simmim``: SimMIM's one-layer head: 1x1 conv from the last stage to ``stride**2 * C`` channels and
  ``PixelShuffle(stride)``. Channels follow the image (``in_chans``), not a hard-coded 3.
* ``progressive``: a SwinUNETR-style decoder that upsamples stage by stage (x2 each) back to full
  resolution, fusing a skip connection at every scale: the encoder stages at strides >= p and strided
  conv blocks on the *masked* image below p (masked pixels are zero there, so nothing leaks).
* ``unetr``: the segmentation head's own decoder (:class:`~echocare.models.heads.unetr.UnetrPyramidDecoder`,
  SwinUNETR's layout) with the image as its output. Its tensors have the head's names and shapes, so a
  fine-tune can start its segmentation or enhancement head from them (``model.head_init=decoder``) instead of
  from random weights. Its image stem also sees only the masked image.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["DECODERS", "OUTPUTS", "ProgressiveDecoder", "SimMIMDecoder", "UnetrDecoder", "build_decoder"]

OUTPUTS = ("sigmoid", "linear")


def _check_output(output: str) -> str:
    if output not in OUTPUTS:
        raise ValueError(f"unknown decoder output {output!r}; choose one of {', '.join(OUTPUTS)}")
    return output


def _activate(x: torch.Tensor, output: str) -> torch.Tensor:
    return torch.sigmoid(x) if output == "sigmoid" else x


def _crop(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Crop (B, C, H', W') to the leading (H, W) = size (undoes the padding of odd-sized stages)."""
    return x[..., : size[0], : size[1]]


class SimMIMDecoder(nn.Module):
    """Linear SimMIM head: 1x1 conv + PixelShuffle from the deepest stage to pixels.

    Args:
        in_features: channels of the last encoder stage.
        stride: total encoder reduction of that stage (8 * patch_size for 4 stages).
        out_chans: image channels to reconstruct.
        output: ``"sigmoid"`` (reconstruction in [0, 1]) or ``"linear"`` (raw, SimMIM's head).
    """

    feature_indices: int | None = 1  # only the last stage is needed

    def __init__(self, in_features: int, stride: int, out_chans: int, output: str = "linear") -> None:
        super().__init__()
        self.stride = stride
        self.output = _check_output(output)
        self.proj = nn.Conv2d(in_features, stride**2 * out_chans, kernel_size=1)
        self.shuffle = nn.PixelShuffle(stride)

    def forward(self, features: Sequence[torch.Tensor], image: torch.Tensor) -> torch.Tensor:
        """features[-1]: (B, C_last, H/s, W/s); image: (B, C, H, W) -> recon (B, C, H, W)."""
        f = features[-1].permute(0, 2, 3, 1)  # (B, h, w, C_last)
        # the 1x1 conv as one GEMM (same parameter): on CPU, conv2d's backward takes a slow unfold path
        x = F.linear(f, self.proj.weight.flatten(1), self.proj.bias)  # (B, h, w, s*s*C)
        x = self.shuffle(x.permute(0, 3, 1, 2))  # (B, C, ceil(H/s)*s, ceil(W/s)*s)
        return _activate(_crop(x, image.shape[-2:]), self.output)


class _UpStep(nn.Module):
    """x2 upsampling with a skip connection (MONAI ``UnetrUpBlock``), cropping odd sizes."""

    def __init__(self, in_channels: int, out_channels: int, norm_name: str | tuple) -> None:
        super().__init__()
        from monai.networks.blocks import UnetrUpBlock  # heavy import, only when this decoder is built

        self.block = UnetrUpBlock(
            spatial_dims=2,
            in_channels=in_channels,
            out_channels=out_channels,
            kernel_size=3,
            upsample_kernel_size=2,
            norm_name=norm_name,
            res_block=True,
        )

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        up = _crop(self.block.transp_conv(x), skip.shape[-2:])  # (B, out, h, w)
        return self.block.conv_block(torch.cat((up, skip), dim=1))


class ProgressiveDecoder(nn.Module):
    """SwinUNETR-style decoder: upsample x2 per step from stride 8p to 1 with skips at every scale.

    Channels at stride t are ``feature_size * max(1, t / p)`` (SwinUNETR's schedule).

    Args:
        encoder_channels: channels of each encoder stage (strides p * 2**i).
        patch_size: encoder patch size p (a power of two).
        out_chans: image channels to reconstruct.
        feature_size: decoder width at strides <= p.
        norm_name: MONAI norm for the conv blocks (``"instance"`` like SwinUNETR).
        output: ``"sigmoid"`` (reconstruction in [0, 1]) or ``"linear"`` (raw).
    """

    feature_indices: int | None = None  # all stages

    def __init__(
        self,
        encoder_channels: Sequence[int],
        patch_size: int,
        out_chans: int,
        feature_size: int = 48,
        norm_name: str | tuple = "instance",
        output: str = "linear",
    ) -> None:
        super().__init__()
        self.output = _check_output(output)
        from monai.networks.blocks import UnetOutBlock, UnetrBasicBlock  # heavy import, only when built

        if patch_size < 1 or patch_size & (patch_size - 1):
            raise ValueError(f"progressive decoder needs a power-of-two patch size, got {patch_size}")
        self.patch_size = patch_size
        self.num_stages = len(encoder_channels)
        self.out_chans = out_chans

        def width(stride: int) -> int:
            return feature_size * max(1, stride // patch_size)

        self.stage_blocks = nn.ModuleList(
            UnetrBasicBlock(
                2, c, width(patch_size * 2**i), kernel_size=3, stride=1, norm_name=norm_name, res_block=True
            )
            for i, c in enumerate(encoder_channels)
        )
        # Skips below the patch size come from the masked image, downsampled by strided conv blocks.
        self.image_blocks = nn.ModuleList(  # strides 1, 2, ..., p/2
            UnetrBasicBlock(2, out_chans, width(2**k), kernel_size=3, stride=2**k, norm_name=norm_name, res_block=True)
            for k in range(int(math.log2(patch_size)))
        )
        deepest = patch_size * 2 ** (self.num_stages - 1)
        strides = [deepest // 2**j for j in range(1, int(math.log2(deepest)) + 1)]  # 4p, 2p, ..., 1
        self.up_strides = strides
        self.up_steps = nn.ModuleList(_UpStep(width(2 * t), width(t), norm_name) for t in strides)
        self.head = UnetOutBlock(2, width(1), out_chans)

    def _skip(self, stride: int, features: Sequence[torch.Tensor], image: torch.Tensor) -> torch.Tensor:
        if stride >= self.patch_size:
            i = int(math.log2(stride // self.patch_size))
            return self.stage_blocks[i](features[i])
        return self.image_blocks[int(math.log2(stride))](image)

    def forward(self, features: Sequence[torch.Tensor], image: torch.Tensor) -> torch.Tensor:
        """features: per-stage NCHW maps; image: masked image (B, C, H, W) -> recon (B, C, H, W)."""
        if len(features) != self.num_stages:
            raise ValueError(f"progressive decoder expects {self.num_stages} feature maps, got {len(features)}")
        x = self.stage_blocks[-1](features[-1])  # (B, 8f, H/8p, W/8p)
        for stride, step in zip(self.up_strides, self.up_steps):
            x = step(x, self._skip(stride, features, image))  # (B, width(stride), H/stride, W/stride)
        return _activate(self.head(x), self.output)


class UnetrDecoder(nn.Module):
    """The fine-tuning heads' pyramid decoder (``net``), trained to reconstruct the image.

    ``net`` is a :class:`~echocare.models.heads.unetr.UnetrPyramidDecoder`: its state dict (``net.*``) has the
    keys and shapes of a segmentation / enhancement head of the same ``feature_size``.

    Args:
        encoder_channels: channels of each encoder stage (strides p * 2**i).
        patch_size: encoder patch size p (a power of two).
        out_chans: image channels to reconstruct.
        feature_size: decoder width at full resolution (the head's ``feature_size``).
        norm_name: MONAI norm for the conv blocks (``"instance"``, the heads' default).
        output: ``"sigmoid"`` (reconstruction in [0, 1]) or ``"linear"`` (raw).
    """

    feature_indices: int | None = None  # all stages

    def __init__(self, encoder_channels: Sequence[int], patch_size: int, out_chans: int, feature_size: int = 32,
                 norm_name: str | tuple = "instance", output: str = "linear") -> None:
        super().__init__()
        from echocare.models.heads.unetr import UnetrPyramidDecoder  # heavy (MONAI), only when built

        self.output = _check_output(output)
        info = [{"num_chs": int(c), "reduction": patch_size * 2**i} for i, c in enumerate(encoder_channels)]
        self.net = UnetrPyramidDecoder()
        self.net.build_decoder(info, out_chans, out_chans, feature_size, norm_name, "unetr decoder")

    def forward(self, features: Sequence[torch.Tensor], image: torch.Tensor) -> torch.Tensor:
        """features: per-stage NCHW maps; image: masked image (B, C, H, W) -> recon (B, C, H, W)."""
        return _activate(self.net.decode(features, image), self.output)


DECODERS = ("simmim", "progressive", "unetr")


def build_decoder(
    kind: str,
    encoder_channels: Sequence[int],
    patch_size: int,
    out_chans: int,
    feature_size: int | None = None,
    output: str = "linear",
) -> nn.Module:
    """Build a decoder by name.

    Args:
        kind: ``"simmim"``, ``"progressive"`` or ``"unetr"``.
        encoder_channels: channels per encoder stage (``[info["num_chs"] for info in encoder.feature_info]``).
        patch_size: encoder patch size.
        out_chans: image channels.
        feature_size: progressive / unetr decoder width (default ``min(48, encoder_channels[0])``).
        output: ``"sigmoid"`` or ``"linear"`` (see the module docstring).

    Raises:
        ValueError: unknown ``kind`` or ``output``.
    """
    if kind == "simmim":
        stride = patch_size * 2 ** (len(encoder_channels) - 1)
        return SimMIMDecoder(encoder_channels[-1], stride, out_chans, output=output)
    if kind == "progressive":
        size = feature_size or min(48, encoder_channels[0])
        return ProgressiveDecoder(encoder_channels, patch_size, out_chans, feature_size=size, output=output)
    if kind == "unetr":
        size = feature_size or min(48, encoder_channels[0])
        return UnetrDecoder(encoder_channels, patch_size, out_chans, feature_size=size, output=output)
    raise ValueError(f"unknown decoder {kind!r}; choose one of {', '.join(DECODERS)}")
