"""Optimizer parameter groups (weight decay only where it belongs) and AdamW."""

from __future__ import annotations

import logging
from typing import Iterable

import torch
from torch import nn

logger = logging.getLogger(__name__)

# Name fragments never decayed even if a module forgets to list them in no_weight_decay().
_NO_DECAY_FRAGMENTS = ("mask_token", "cls_token", "pos_embed", "absolute_pos_embed",
                       "relative_position_bias_table", "relative_position_index")


def no_weight_decay_names(model: nn.Module) -> set[str]:
    """Full parameter names that submodules exclude via their ``no_weight_decay()`` method."""
    names: set[str] = set()
    for prefix, module in model.named_modules():
        fn = getattr(module, "no_weight_decay", None)
        if not callable(fn):
            continue
        for local in fn():
            names.add(f"{prefix}.{local}" if prefix else local)
    return names


def build_param_groups(model: nn.Module, weight_decay: float,
                       extra_no_decay: Iterable[str] = ()) -> list[dict]:
    """Split trainable parameters into a decayed and a non-decayed group.

    No decay for: parameters with ``ndim <= 1`` (norms, biases, scalars),
    names returned by any submodule's ``no_weight_decay()`` (e.g. the Swin
    encoder's position tables and ``mask_token``), and names containing a
    token / position-table fragment. A task may instead define
    ``param_groups(weight_decay) -> list[dict]`` (e.g. layer-wise lr decay with
    an ``lr_scale`` key); the trainer then uses those groups.

    Args:
        model: The module to optimize.
        weight_decay: Decay of the decayed group.
        extra_no_decay: Further exact parameter names to exclude.

    Returns:
        ``[{"params", "weight_decay", "names"}, ...]`` (empty groups dropped).
    """
    skip = no_weight_decay_names(model) | set(extra_no_decay)
    decay, no_decay, decay_names, no_decay_names = [], [], [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        short = name.split(".")[-1]
        if (param.ndim <= 1 or name in skip or any(name.endswith("." + s) or name == s for s in skip)
                or any(frag in short for frag in _NO_DECAY_FRAGMENTS)):
            no_decay.append(param)
            no_decay_names.append(name)
        else:
            decay.append(param)
            decay_names.append(name)
    logger.info("param groups: %d decayed, %d not decayed tensors", len(decay), len(no_decay))
    groups = [
        {"params": decay, "weight_decay": weight_decay, "names": decay_names},
        {"params": no_decay, "weight_decay": 0.0, "names": no_decay_names},
    ]
    return [g for g in groups if g["params"]]


def build_optimizer(groups: list[dict], peak_lr: float, betas: Iterable[float], eps: float) -> torch.optim.AdamW:
    """AdamW over ``groups``; each group's lr is ``peak_lr * group.get("lr_scale", 1)``."""
    clean = []
    for g in groups:
        g = {k: v for k, v in g.items() if k != "names"}
        g["lr"] = peak_lr * float(g.pop("lr_scale", 1.0))
        clean.append(g)
    return torch.optim.AdamW(clean, lr=peak_lr, betas=tuple(betas), eps=eps)
