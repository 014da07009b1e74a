"""Shared building blocks for task heads.

Every head is built from a backbone's ``feature_info`` (timm style: one dict per
stage with ``num_chs`` and ``reduction``) and consumes the list of NCHW feature
maps that ``backbone.forward_intermediates(..., output_fmt="NCHW")`` returns.
Heads never see the backbone itself.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class FeatureSpec:
    """Channels and strides of a backbone's multi-scale features.

    Attributes:
        channels: channel count per stage, shallow first.
        reductions: stride (input pixels per feature pixel) per stage.
    """

    channels: tuple[int, ...]
    reductions: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.channels)

    def index_of_reduction(self, reduction: int) -> int:
        """Index of the stage with the given stride.

        Raises:
            ValueError: no stage has that stride.
        """
        if reduction not in self.reductions:
            raise ValueError(
                f"no feature level with stride {reduction}; available strides: {list(self.reductions)}"
            )
        return self.reductions.index(reduction)


def parse_feature_info(feature_info: Any) -> FeatureSpec:
    """Normalise a backbone's feature description into a :class:`FeatureSpec`.

    Args:
        feature_info: a list of dicts with ``num_chs`` and ``reduction`` (timm
            ``model.feature_info``), a timm ``FeatureInfo`` object, an existing
            :class:`FeatureSpec`, or a list of ``(channels, reduction)`` pairs.

    Returns:
        The parsed spec.

    Raises:
        ValueError: empty or malformed description, or strides not increasing.
    """
    if isinstance(feature_info, FeatureSpec):
        return feature_info
    if hasattr(feature_info, "channels") and hasattr(feature_info, "reduction") and callable(
        feature_info.channels
    ):  # timm FeatureInfo (features_only models)
        channels = tuple(int(c) for c in feature_info.channels())
        reductions = tuple(int(r) for r in feature_info.reduction())
    else:
        if not isinstance(feature_info, Sequence) or len(feature_info) == 0:
            raise ValueError(f"feature_info must be a non-empty list, got {feature_info!r}")
        channels_l: list[int] = []
        reductions_l: list[int] = []
        for i, item in enumerate(feature_info):
            if isinstance(item, Mapping):
                if "num_chs" not in item or "reduction" not in item:
                    raise ValueError(f"feature_info[{i}] lacks 'num_chs'/'reduction': {item!r}")
                channels_l.append(int(item["num_chs"]))
                reductions_l.append(int(item["reduction"]))
            elif isinstance(item, Sequence) and len(item) == 2:
                channels_l.append(int(item[0]))
                reductions_l.append(int(item[1]))
            else:
                raise ValueError(f"feature_info[{i}] is neither a dict nor a (channels, reduction) pair: {item!r}")
        channels, reductions = tuple(channels_l), tuple(reductions_l)
    if any(b <= a for a, b in zip(reductions, reductions[1:])):
        raise ValueError(f"feature strides must strictly increase, got {list(reductions)}")
    return FeatureSpec(channels=channels, reductions=reductions)


def check_features(features: Sequence[torch.Tensor], spec: FeatureSpec, image_hw: tuple[int, int]) -> None:
    """Check that ``features`` match ``spec`` for an input of size ``image_hw``.

    Raises:
        ValueError: wrong number of maps, wrong channels, or a spatial size that
            is not ``image_size / stride``.
    """
    if len(features) != len(spec):
        raise ValueError(f"expected {len(spec)} feature maps (strides {list(spec.reductions)}), got {len(features)}")
    h, w = image_hw
    for i, (f, c, r) in enumerate(zip(features, spec.channels, spec.reductions)):
        if f.ndim != 4 or f.shape[1] != c:
            raise ValueError(f"feature map {i} should be (B, {c}, h, w) NCHW, got {tuple(f.shape)}")
        if f.shape[-2] * r != h or f.shape[-1] * r != w:
            raise ValueError(
                f"feature map {i} has size {tuple(f.shape[-2:])} but the input {h}x{w} at stride {r} "
                f"needs {(h // r, w // r)}; input sides must be multiples of {spec.reductions[-1]}"
            )


class ConvNormAct(nn.Sequential):
    """3x3 (or kxk) conv → GroupNorm → GELU."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int = 3, groups_norm: int = 8) -> None:
        groups = groups_norm if out_ch % groups_norm == 0 else 1
        super().__init__(
            nn.Conv2d(in_ch, out_ch, kernel_size, padding=kernel_size // 2, bias=False),
            nn.GroupNorm(groups, out_ch),
            nn.GELU(),
        )


class FeatureFusion(nn.Module):
    """FPN-style fusion of several pyramid levels into one map at a target stride.

    Each selected level gets a 1x1 lateral projection to ``out_channels``; levels
    are upsampled (bilinear) to the finest selected stride, summed, and refined by
    ``num_convs`` ConvNormAct blocks. The output stride is the finest selected one.

    Args:
        spec: backbone feature spec.
        out_channels: channels of the fused map.
        min_reduction: finest stride to use; levels with a smaller stride are ignored.
        num_convs: refinement convs after the sum.
    """

    def __init__(self, spec: FeatureSpec, out_channels: int, min_reduction: int, num_convs: int = 1) -> None:
        super().__init__()
        self.levels = [i for i, r in enumerate(spec.reductions) if r >= min_reduction]
        if not self.levels:
            raise ValueError(f"no feature level with stride >= {min_reduction}; strides: {list(spec.reductions)}")
        self.out_reduction = spec.reductions[self.levels[0]]
        self.lateral = nn.ModuleList(nn.Conv2d(spec.channels[i], out_channels, 1) for i in self.levels)
        self.refine = nn.Sequential(*[ConvNormAct(out_channels, out_channels) for _ in range(num_convs)])

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        """Fuse levels. Returns (B, out_channels, H/s, W/s) with s = ``out_reduction``."""
        first = features[self.levels[0]]
        size = first.shape[-2:]
        fused = self.lateral[0](first)
        for proj, i in zip(self.lateral[1:], self.levels[1:]):
            # up: (B, D, h_i, w_i) → (B, D, h_0, w_0)
            fused = fused + F.interpolate(proj(features[i]), size=size, mode="bilinear", align_corners=False)
        return self.refine(fused)


def global_pool(feature: torch.Tensor) -> torch.Tensor:
    """Mean over spatial positions: (B, C, h, w) → (B, C)."""
    return feature.mean(dim=(-2, -1))


def require_keys(targets: Mapping[str, Any], keys: Sequence[str], head: str) -> None:
    """Raise a KeyError naming the head and the missing target keys."""
    missing = [k for k in keys if k not in targets]
    if missing:
        raise KeyError(f"{head} targets lack {missing}; got keys {sorted(targets)}")
