"""Landmark localisation by heatmap regression with sub-pixel decoding."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from echocare.losses.landmarks import heatmap_mse_loss
from echocare.models.heads.common import FeatureFusion, check_features, parse_feature_info
from echocare.models.heads.heatmap import decode_heatmaps, render_gaussian_heatmaps


class LandmarkHead(nn.Module):
    """Fuse the pyramid at ``stride`` (default 4) and predict one heatmap per landmark.

    Training targets are Gaussians (``sigma`` heatmap cells, peak 1) centred at the
    exact sub-pixel landmark positions; the loss is heatmap MSE over visible
    landmarks (scaled by ``loss_scale`` so its magnitude is O(1)). Decoding is
    argmax + log-domain Taylor refinement by default (see
    :func:`echocare.models.heads.heatmap.decode_heatmaps`).

    Args:
        feature_info: backbone feature description.
        num_landmarks: L.
        stride: heatmap stride (finest fused level with at least this stride).
        channels: fused width.
        num_convs: refinement convs after fusion.
        sigma: target Gaussian std in heatmap cells.
        decode: ``"taylor"``, ``"centroid"`` or ``"argmax"``.
        loss_scale: multiplier of the MSE.

    Forward: ``features``, ``image`` (B, C, H, W) → ``{"heatmaps": (B, L, H/s, W/s)}``.
    Targets for :meth:`loss`: ``{"points": (B, L, 2) (x, y) input pixels,
    "visible": optional (B, L)}``. Landmark coordinates use pixel-index
    convention (pixel centres at integers).
    """

    task = "landmarks"

    def __init__(
        self,
        feature_info: Any,
        num_landmarks: int,
        stride: int = 4,
        channels: int = 64,
        num_convs: int = 2,
        sigma: float = 2.0,
        decode: str = "taylor",
        loss_scale: float = 100.0,
    ) -> None:
        super().__init__()
        if num_landmarks < 1:
            raise ValueError(f"num_landmarks must be >= 1, got {num_landmarks}")
        if decode not in ("taylor", "centroid", "argmax"):
            raise ValueError(f"unknown decode method {decode!r}")
        self.spec = parse_feature_info(feature_info)
        self.num_landmarks = num_landmarks
        self.fusion = FeatureFusion(self.spec, channels, min_reduction=stride, num_convs=num_convs)
        self.stride = self.fusion.out_reduction
        self.out = nn.Conv2d(channels, num_landmarks, 1)
        self.sigma = sigma
        self.decode = decode
        self.loss_scale = loss_scale

    def forward(self, features: Sequence[torch.Tensor], image: torch.Tensor) -> dict[str, torch.Tensor]:
        """Heatmaps (B, L, H/s, W/s)."""
        check_features(features, self.spec, (image.shape[-2], image.shape[-1]))
        return {"heatmaps": self.out(self.fusion(features))}

    def loss(self, outputs: Mapping[str, torch.Tensor], targets: Mapping[str, Any]) -> dict[str, Any]:
        """Heatmap MSE against Gaussian targets; logs the mean radial error in input pixels."""
        if "points" not in targets:
            raise KeyError(f"landmarks targets lack ['points']; got keys {sorted(targets)}")
        heat = outputs["heatmaps"]
        b, l, h, w = heat.shape
        points = torch.as_tensor(targets["points"], device=heat.device).float()
        if points.shape != (b, l, 2):
            raise ValueError(f"landmark points should be {(b, l, 2)} (x, y), got {tuple(points.shape)}")
        visible = targets.get("visible")
        visible = None if visible is None else torch.as_tensor(visible, device=heat.device).float()
        target = render_gaussian_heatmaps(points, (h, w), self.stride, self.sigma)  # (B, L, h, w)
        loss = self.loss_scale * heatmap_mse_loss(heat, target, visible)
        with torch.no_grad():
            pred, _ = decode_heatmaps(heat.detach(), self.stride, self.decode)
            err = (pred - points).norm(dim=-1)  # (B, L)
            mre = err.mean() if visible is None else (err * visible).sum() / visible.sum().clamp(min=1)
        return {"loss": loss, "logs": {"mre_px": mre}}

    @torch.no_grad()
    def predict(self, outputs: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Metric-ready ``points`` (B, L, 2) (x, y) in input pixels and ``scores`` (B, L)."""
        points, scores = decode_heatmaps(outputs["heatmaps"], self.stride, self.decode)
        return {"points": points, "scores": scores}
