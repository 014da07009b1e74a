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


def is_no_weight_decay(name: str, param: torch.Tensor, skip: set[str]) -> bool:
    """The one no-weight-decay rule of echocare (pretraining and fine-tuning alike).

    No decay for parameters with ``ndim <= 1`` (norms, biases, scalars), names listed by a submodule's
    ``no_weight_decay()`` (``skip``, full or as a dotted suffix), and names whose last part contains a
    token / position-table fragment (``mask_token``, ``relative_position_bias_table``, ...).
    """
    short = name.split(".")[-1]
    return (param.ndim <= 1 or name in skip or any(name.endswith("." + s) for s in skip)
            or any(frag in short for frag in _NO_DECAY_FRAGMENTS))


def build_param_groups(model: nn.Module, weight_decay: float, extra_no_decay: Iterable[str] = (),
                       lr_groups: list[dict] | None = None) -> list[dict]:
    """Optimizer groups: each lr group split into a decayed and a non-decayed part by :func:`is_no_weight_decay`.

    Args:
        model: The module to optimize (its ``named_parameters`` decide weight decay).
        weight_decay: Decay of the decayed groups.
        extra_no_decay: Further exact parameter names to exclude.
        lr_groups: ``[{"params", "names", "lr_scale"}]`` from a task's ``lr_groups()`` (e.g. layer-wise lr
            decay); None = one group with scale 1 over all parameters.

    Returns:
        ``[{"params", "names", "weight_decay", "lr_scale"}, ...]`` (frozen parameters and empty groups dropped).
    """
    skip = no_weight_decay_names(model) | set(extra_no_decay)
    no_decay_ids = {id(p) for n, p in model.named_parameters() if is_no_weight_decay(n, p, skip)}
    if lr_groups is None:
        named = list(model.named_parameters())
        lr_groups = [{"params": [p for _, p in named], "names": [n for n, _ in named], "lr_scale": 1.0}]
    groups = []
    for g in lr_groups:
        names = g.get("names") or [""] * len(g["params"])
        for decay in (True, False):
            sel = [(n, p) for n, p in zip(names, g["params"]) if p.requires_grad and (id(p) in no_decay_ids) != decay]
            if sel:
                groups.append({"params": [p for _, p in sel], "names": [n for n, _ in sel],
                               "weight_decay": weight_decay if decay else 0.0,
                               "lr_scale": float(g.get("lr_scale", 1.0))})
    n_decay = sum(len(g["params"]) for g in groups if g["weight_decay"])
    n_all = sum(len(g["params"]) for g in groups)
    logger.info("param groups: %d groups, %d decayed, %d not decayed tensors", len(groups), n_decay, n_all - n_decay)
    return groups


def build_optimizer(groups: list[dict], peak_lr: float, betas: Iterable[float], eps: float,
                    fused: bool = True) -> torch.optim.AdamW:
    """AdamW over ``groups``; each group's lr is ``peak_lr * group.get("lr_scale", 1)``.

    ``fused``: torch's fused AdamW kernel (CPU since torch 2.4, CUDA), one pass over all tensors; the
    default per-tensor loop on CPU cost ~19 % of a Swin-T fp32 step in ``bench/results/pretrain_profile.md``.
    Falls back to the default implementation where the fused one is unavailable.
    """
    clean = []
    for g in groups:
        g = {k: v for k, v in g.items() if k != "names"}
        g["lr"] = peak_lr * float(g.pop("lr_scale", 1.0))
        clean.append(g)
    if fused:
        try:
            return torch.optim.AdamW(clean, lr=peak_lr, betas=tuple(betas), eps=eps, fused=True)
        except (RuntimeError, TypeError, ValueError) as err:  # device or torch without a fused AdamW
            logger.info("fused AdamW unavailable (%s); using the default implementation", err)
    return torch.optim.AdamW(clean, lr=peak_lr, betas=tuple(betas), eps=eps)
