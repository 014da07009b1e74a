"""Scalar regression from one image or from a frame sequence (e.g. EF from a cine loop)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from echocare.models.heads.common import global_pool, parse_feature_info, require_keys
from echocare.models.heads.temporal import TemporalAttentionPool

_LOSSES = {"l1": F.l1_loss, "mse": F.mse_loss, "smooth_l1": F.smooth_l1_loss}


class RegressionHead(nn.Module):
    """Pooled last-stage features → MLP → ``num_outputs`` values.

    With ``temporal=True`` the input is a sequence (B, T, C, H, W): per-frame
    embeddings (B, T, C) are pooled by :class:`TemporalAttentionPool`. Targets
    are standardised with ``target_mean``/``target_std`` (the network predicts
    ``(y - mean) / std``; the loss is computed in that space) and outputs are
    mapped back to the original units.

    Args:
        feature_info: backbone feature description.
        num_outputs: number of regressed values.
        temporal: expect frame sequences and pool over time.
        embed_dim: hidden width of the MLP / temporal module.
        num_heads: temporal attention heads.
        temporal_depth: temporal transformer layers.
        dropout: dropout before the output layer.
        loss: ``"l1"``, ``"mse"`` or ``"smooth_l1"``.
        target_mean, target_std: target standardisation (e.g. EF: 55, 12).

    Forward → ``{"value": (B, K) original units, "normalized": (B, K)}`` plus
    ``"frame_weights"`` (B, T) when temporal. Targets: ``{"value": (B,) or (B, K)}``.
    """

    task = "regression"

    def __init__(
        self,
        feature_info: Any,
        num_outputs: int = 1,
        temporal: bool = False,
        embed_dim: int = 256,
        num_heads: int = 4,
        temporal_depth: int = 1,
        dropout: float = 0.0,
        loss: str = "l1",
        target_mean: float = 0.0,
        target_std: float = 1.0,
    ) -> None:
        super().__init__()
        if loss not in _LOSSES:
            raise ValueError(f"unknown regression loss {loss!r}; choose from {sorted(_LOSSES)}")
        if target_std <= 0:
            raise ValueError(f"target_std must be > 0, got {target_std}")
        self.spec = parse_feature_info(feature_info)
        in_ch = self.spec.channels[-1]
        self.temporal = temporal
        self.num_outputs = num_outputs
        self.loss_name = loss
        self.target_mean, self.target_std = float(target_mean), float(target_std)
        if temporal:
            self.pool = TemporalAttentionPool(in_ch, embed_dim, num_heads, temporal_depth)
            self.mlp = nn.Sequential(nn.Dropout(dropout), nn.Linear(embed_dim, num_outputs))
        else:
            self.mlp = nn.Sequential(
                nn.LayerNorm(in_ch), nn.Linear(in_ch, embed_dim), nn.GELU(), nn.Dropout(dropout),
                nn.Linear(embed_dim, num_outputs),
            )

    def forward(self, features: Sequence[torch.Tensor], image: torch.Tensor) -> dict[str, torch.Tensor]:
        """Regress from (B, C, H, W) images or (B, T, C, H, W) sequences."""
        emb = global_pool(features[-1])  # (N, C), N = B or B*T
        out: dict[str, torch.Tensor] = {}
        if self.temporal:
            if image.ndim != 5:
                raise ValueError(f"temporal regression expects (B, T, C, H, W) input, got {tuple(image.shape)}")
            b, t = image.shape[:2]
            pooled, weights = self.pool(emb.reshape(b, t, -1))  # (B, D), (B, T)
            out["frame_weights"] = weights
            norm = self.mlp(pooled)  # (B, K)
        else:
            if image.ndim != 4:
                raise ValueError(
                    f"image regression expects (B, C, H, W) input, got {tuple(image.shape)}; "
                    "use temporal=True for frame sequences"
                )
            norm = self.mlp(emb)  # (B, K)
        out["normalized"] = norm
        out["value"] = norm * self.target_std + self.target_mean
        return out

    def loss(self, outputs: Mapping[str, torch.Tensor], targets: Mapping[str, Any]) -> dict[str, Any]:
        """Loss on standardised targets; logs MAE in original units."""
        require_keys(targets, ["value"], "regression")
        pred = outputs["normalized"].float()  # (B, K)
        y = torch.as_tensor(targets["value"], device=pred.device).float().reshape(pred.shape[0], -1)
        if y.shape != pred.shape:
            raise ValueError(f"regression targets should be {tuple(pred.shape)} (or (B,) for K=1), got {tuple(y.shape)}")
        y_norm = (y - self.target_mean) / self.target_std
        loss = _LOSSES[self.loss_name](pred, y_norm)
        mae = (outputs["value"].detach().float() - y).abs().mean()
        return {"loss": loss, "logs": {"mae": mae}}

    @torch.no_grad()
    def predict(self, outputs: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Metric-ready ``value`` (B,) for one output, else (B, K)."""
        value = outputs["value"].float()
        return {"value": value[:, 0] if self.num_outputs == 1 else value}
