"""On a CUDA machine: a pretraining step of the debug model in bf16 with SDPA and fused AdamW (skipped without)."""

from __future__ import annotations

import pytest
import torch

from echocare.engine.optim import build_optimizer, build_param_groups
from echocare.models import create_model
from echocare.models.encoder import set_fused_attention

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def test_bf16_step_with_sdpa_and_fused_adamw_on_cuda():
    torch.manual_seed(0)
    model = create_model("echocare_swin_debug", ontology=None, in_chans=1, img_size=64, decoder="simmim").cuda()
    assert set_fused_attention(model, True) > 0
    opt = build_optimizer(build_param_groups(model, 0.05), 1e-3, (0.9, 0.999), 1e-8)
    assert opt.defaults.get("fused") is True
    images = torch.rand(4, 1, 64, 64, device="cuda")
    mask = (torch.rand(4, 16, 16, device="cuda") < 0.5).float()
    before = [p.detach().clone() for p in model.parameters()]
    losses = []
    for _ in range(3):
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = model(images, mask, None)["loss"]
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(float(loss))
    assert all(torch.isfinite(torch.tensor(losses)))
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
