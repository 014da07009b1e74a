"""Per-step learning-rate schedule: linear warmup then cosine / linear / constant decay."""

from __future__ import annotations

import math
from functools import partial

import torch


def lr_factor(step: int, warmup_steps: int, total_steps: int, schedule: str = "cosine",
              min_ratio: float = 0.0) -> float:
    """Multiplier of the peak lr for optimizer step ``step`` (0-based).

    Warmup rises linearly from ``1 / (warmup + 1)`` to 1 over ``warmup_steps``
    steps; the decay then goes from 1 to ``min_ratio`` at ``total_steps``.

    Args:
        step: Optimizer steps already taken.
        warmup_steps: Warmup length.
        total_steps: Schedule length (``train.max_steps``).
        schedule: "cosine", "linear" or "constant".
        min_ratio: Final multiplier.
    """
    if step < warmup_steps:
        return (step + 1) / (warmup_steps + 1)
    if schedule == "constant":
        return 1.0
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    if schedule == "cosine":
        decay = 0.5 * (1.0 + math.cos(math.pi * progress))
    elif schedule == "linear":
        decay = 1.0 - progress
    else:
        raise ValueError(f"unknown schedule {schedule!r}; valid: cosine, linear, constant")
    return min_ratio + (1.0 - min_ratio) * decay


def build_scheduler(optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int,
                    schedule: str = "cosine", min_ratio: float = 0.0) -> torch.optim.lr_scheduler.LambdaLR:
    """A LambdaLR stepping once per optimizer step (each group keeps its own base lr)."""
    fn = partial(lr_factor, warmup_steps=warmup_steps, total_steps=total_steps, schedule=schedule,
                 min_ratio=min_ratio)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, fn)
