"""Optimizer parameter groups and the per-step warmup + cosine schedule."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from echocare.engine.optim import build_optimizer, build_param_groups
from echocare.engine.schedule import build_scheduler, lr_factor


def test_lr_factor_warmup_then_cosine():
    assert lr_factor(0, 10, 110) == pytest.approx(1 / 11)
    assert lr_factor(9, 10, 110) == pytest.approx(10 / 11)
    assert lr_factor(10, 10, 110) == pytest.approx(1.0)
    assert lr_factor(60, 10, 110) == pytest.approx(0.5)
    assert lr_factor(110, 10, 110) == pytest.approx(0.0, abs=1e-12)
    assert lr_factor(110, 10, 110, min_ratio=0.1) == pytest.approx(0.1)
    assert lr_factor(60, 10, 110, schedule="linear") == pytest.approx(0.5)
    assert lr_factor(100, 10, 110, schedule="constant") == 1.0
    values = [lr_factor(s, 10, 110) for s in range(10, 111)]
    assert all(a >= b for a, b in zip(values, values[1:]))  # monotone decay
    with pytest.raises(ValueError, match="unknown schedule"):
        lr_factor(50, 10, 110, schedule="step")


def test_scheduler_steps_per_optimizer_step():
    p = nn.Parameter(torch.zeros(2))
    opt = torch.optim.AdamW([p], lr=1e-3)
    sched = build_scheduler(opt, warmup_steps=4, total_steps=20)
    lrs = []
    for _ in range(20):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(1e-3 / 5)
    assert max(lrs) == pytest.approx(1e-3)
    assert lrs[-1] < lrs[10] < max(lrs)
    assert lrs[4] == pytest.approx(1e-3 * lr_factor(4, 4, 20))


class _Enc(nn.Module):
    def __init__(self):
        super().__init__()
        self.mask_token = nn.Parameter(torch.zeros(1, 1, 8))
        self.table = nn.Parameter(torch.zeros(5, 5))  # 2-D, excluded only via no_weight_decay()
        self.proj = nn.Linear(8, 8)
        self.norm = nn.LayerNorm(8)

    def no_weight_decay(self):
        return {"table"}


def test_param_groups_exclude_norms_biases_tokens_tables():
    model = nn.Sequential()
    model.add_module("encoder", _Enc())
    model.add_module("head", nn.Linear(8, 2))
    model.head.weight.requires_grad_(True)
    frozen = nn.Parameter(torch.ones(3, 3), requires_grad=False)
    model.register_parameter("frozen", frozen)
    groups = build_param_groups(model, weight_decay=0.05)
    by_decay = {g["weight_decay"]: set(g["names"]) for g in groups}
    assert by_decay[0.05] == {"encoder.proj.weight", "head.weight"}
    assert by_decay[0.0] == {"encoder.mask_token", "encoder.table", "encoder.proj.bias", "encoder.norm.weight",
                             "encoder.norm.bias", "head.bias"}
    opt = build_optimizer(groups + [{"params": [nn.Parameter(torch.ones(2, 2))], "weight_decay": 0.0,
                                     "lr_scale": 0.5}], peak_lr=1e-3, betas=(0.9, 0.999), eps=1e-8)
    assert [g["lr"] for g in opt.param_groups] == [1e-3, 1e-3, 5e-4]
    assert all("names" not in g for g in opt.param_groups)
    assert math.isclose(opt.defaults["eps"], 1e-8)

