"""Temporal aggregation of per-frame embeddings (cine loops, video clips)."""

from __future__ import annotations

import math

import torch
from torch import nn


def sinusoidal_positions(length: int, dim: int, device: torch.device) -> torch.Tensor:
    """Fixed sine/cosine position codes (length, dim) (Vaswani et al.)."""
    pos = torch.arange(length, device=device, dtype=torch.float32).unsqueeze(1)  # (T, 1)
    freq = torch.exp(torch.arange(0, dim, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / dim))
    codes = torch.zeros(length, dim, device=device)
    codes[:, 0::2] = torch.sin(pos * freq)
    codes[:, 1::2] = torch.cos(pos * freq[: dim // 2])
    return codes


class TemporalAttentionPool(nn.Module):
    """Per-frame embeddings (B, T, D_in) → one clip embedding (B, D).

    A linear projection to ``dim``, fixed sinusoidal frame positions, ``depth``
    pre-norm transformer layers over time (so frame order matters, e.g. end-diastole
    vs end-systole), then attention pooling: a learned query attends over the
    frames. The attention weights (B, T) are returned for interpretation.

    Args:
        in_dim: per-frame embedding size.
        dim: working width (must be divisible by ``num_heads``).
        num_heads: attention heads.
        depth: temporal transformer layers (0 = pooling only).
        mlp_ratio: feed-forward width multiplier.
        dropout: dropout inside the transformer layers.
    """

    def __init__(
        self, in_dim: int, dim: int = 256, num_heads: int = 4, depth: int = 1, mlp_ratio: float = 2.0,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"temporal dim {dim} is not divisible by num_heads {num_heads}")
        self.proj = nn.Linear(in_dim, dim)
        self.encoder: nn.Module
        if depth > 0:
            layer = nn.TransformerEncoderLayer(
                dim, num_heads, int(dim * mlp_ratio), dropout, activation="gelu", batch_first=True, norm_first=True
            )
            self.encoder = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        else:
            self.encoder = nn.Identity()
        self.query = nn.Parameter(torch.zeros(1, 1, dim))
        nn.init.trunc_normal_(self.query, std=0.02)
        self.attn = nn.MultiheadAttention(dim, num_heads, batch_first=True)
        self.norm = nn.LayerNorm(dim)

    def forward(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Pool frames: (B, T, D_in) → (pooled (B, D), weights (B, T))."""
        if frames.ndim != 3:
            raise ValueError(f"frame embeddings should be (B, T, D), got {tuple(frames.shape)}")
        b, t, _ = frames.shape
        x = self.proj(frames)  # (B, T, D)
        x = x + sinusoidal_positions(t, x.shape[-1], x.device).to(x.dtype)
        x = self.encoder(x)  # (B, T, D)
        query = self.query.expand(b, -1, -1)  # (B, 1, D)
        pooled, weights = self.attn(query, x, x, need_weights=True)  # (B, 1, D), (B, 1, T)
        return self.norm(pooled[:, 0]), weights[:, 0]
