"""set_fused_attention: SDPA window attention agrees with timm's explicit attention, forward and backward."""

from __future__ import annotations

import torch

from echocare.models import create_model
from echocare.models.encoder import set_fused_attention


def test_fused_attention_matches_explicit_attention():
    torch.manual_seed(0)
    model = create_model("echocare_swin_debug", ontology=None, in_chans=1, img_size=64, decoder="simmim").eval()
    images = torch.rand(2, 1, 64, 64)
    mask = (torch.rand(2, 16, 16) < 0.5).float()
    outs, grads = {}, {}
    for fused in (False, True):
        n = set_fused_attention(model, fused)
        assert n == sum(len(stage.blocks) for stage in model.encoder.layers)
        model.zero_grad(set_to_none=True)
        with torch.profiler.profile() as prof:
            out = model(images, mask, None)
        ops = {e.key for e in prof.key_averages()}
        assert ("aten::scaled_dot_product_attention" in ops) == fused
        out["loss"].backward()
        outs[fused] = out["recon"].detach()
        grads[fused] = model.encoder.layers[0].blocks[0].attn.qkv.weight.grad.clone()
    assert not torch.equal(outs[True], torch.zeros_like(outs[True]))
    torch.testing.assert_close(outs[True], outs[False], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(grads[True], grads[False], rtol=1e-3, atol=1e-5)
