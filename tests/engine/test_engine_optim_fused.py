"""The engine's AdamW is torch's fused kernel (on CPU too) and steps like the per-tensor loop."""

from __future__ import annotations

import torch
from torch import nn

from echocare.engine.optim import build_optimizer, build_param_groups


def _trained(fused: bool) -> tuple[nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(8, 16), nn.LayerNorm(16), nn.Linear(16, 1))
    opt = build_optimizer(build_param_groups(net, 0.05), 1e-2, (0.9, 0.999), 1e-8, fused=fused)
    g = torch.Generator().manual_seed(1)
    for _ in range(3):
        x = torch.randn(4, 8, generator=g)
        net(x).pow(2).mean().backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return net, opt


def test_fused_adamw_on_cpu_matches_the_loop():
    fused_net, fused_opt = _trained(True)
    loop_net, loop_opt = _trained(False)
    assert fused_opt.defaults["fused"] is True and not loop_opt.defaults.get("fused")
    for a, b in zip(fused_net.parameters(), loop_net.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    torch.manual_seed(0)
    initial = nn.Sequential(nn.Linear(8, 16), nn.LayerNorm(16), nn.Linear(16, 1))
    assert all(not torch.equal(a, b) for a, b in zip(fused_net.parameters(), initial.parameters()))  # it stepped
