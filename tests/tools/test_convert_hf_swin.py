"""tools/convert_hf_swin.py: HF transformers Swin (SimMIM) encoder -> echocare/timm export, equal features."""

from __future__ import annotations

import importlib.util
import inspect
import json
from pathlib import Path

import pytest
import timm
import torch
from safetensors import safe_open
from safetensors.torch import load_file
from timm.models.swin_transformer import PatchMerging
from transformers import SwinConfig, SwinForMaskedImageModeling
from transformers.models.swin.modeling_swin import SwinPatchMerging

import echocare

TOOL = Path(__file__).resolve().parents[2] / "tools" / "convert_hf_swin.py"


def _tool():
    spec = importlib.util.spec_from_file_location("convert_hf_swin", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def hf_model(tmp_path_factory):
    torch.manual_seed(0)
    cfg = SwinConfig(image_size=64, patch_size=4, num_channels=1, embed_dim=16, depths=[2, 2, 2], num_heads=[1, 2, 4],
                     window_size=4, drop_path_rate=0.0, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
                     encoder_stride=16)
    model = SwinForMaskedImageModeling(cfg).eval()
    with torch.no_grad():  # non-trivial norms, biases and position tables: a swapped tensor would show
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    out = tmp_path_factory.mktemp("hf")
    model.save_pretrained(out)
    return model, out


def test_patch_merging_channel_order_matches():
    torch.manual_seed(1)
    takes_resolution = "input_resolution" in inspect.signature(SwinPatchMerging).parameters  # transformers 4.x
    hf = SwinPatchMerging((4, 6), dim=8) if takes_resolution else SwinPatchMerging(dim=8)
    tm = PatchMerging(dim=8)
    with torch.no_grad():
        for p in hf.parameters():
            p.normal_()
    tm.load_state_dict(hf.state_dict(), strict=True)  # same names: norm (4C), reduction (4C -> 2C)
    x = torch.randn(2, 4, 6, 8)  # (B, H, W, C)
    torch.testing.assert_close(tm(x), hf(x.reshape(2, 24, 8), (4, 6)).reshape(2, 2, 3, 16))


def test_converted_encoder_has_hf_features(hf_model, tmp_path):
    model, hf_dir = hf_model
    tool = _tool()
    out = tmp_path / "hf_encoder.safetensors"
    assert tool.main([str(hf_dir), "--out", str(out)]) == 0
    with safe_open(str(out), framework="pt") as f:
        meta = f.metadata()
    assert meta["format"] == "echocare-encoder"
    stock = timm.create_model(meta["architecture"], pretrained=False, **json.loads(meta["model_args"]))
    stock.load_state_dict(load_file(str(out)), strict=True)  # loads in stock timm, no echocare needed

    backbone = echocare.load_backbone(out).eval()
    x = torch.rand(2, 1, 64, 64)
    with torch.no_grad():
        ref = model.swin(x, output_hidden_states=True, output_hidden_states_before_downsampling=True)
        final, inter = backbone.forward_intermediates(x)
        stock.eval()
        stock_final = stock.forward_features(x)
    for i, t in enumerate(inter):  # stage i output = HF stage i before its (moved) downsample
        torch.testing.assert_close(t, ref.reshaped_hidden_states[i + 1], atol=1e-5, rtol=1e-4)
    b, h, w, c = final.shape
    torch.testing.assert_close(final.reshape(b, h * w, c), ref.last_hidden_state, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(stock_final, final, atol=1e-5, rtol=1e-4)


def test_mask_token_maps_and_masked_features_match(hf_model):
    model, _ = hf_model
    tool = _tool()
    state = tool.convert_hf_swin_state(model.state_dict())
    args = tool.hf_config_to_swin_kwargs(model.config.to_dict())
    enc = echocare.models.EchoCareSwin(**args).eval()
    enc.load_state_dict(state, strict=True)  # includes the mask token: nothing missing, nothing left over
    x = torch.rand(2, 1, 64, 64)
    mask = (torch.rand(2, 16, 16) < 0.5).float()  # (B, H/p, W/p)
    with torch.no_grad():
        ref = model.swin(x, bool_masked_pos=mask.flatten(1).bool()).last_hidden_state
        ours = enc.forward_features(x, mask=mask)
    torch.testing.assert_close(ours.reshape(2, -1, ours.shape[-1]), ref, atol=1e-5, rtol=1e-4)


def test_errors(tmp_path, capsys):
    tool = _tool()
    with pytest.raises(ValueError, match="no timm counterpart"):
        tool.convert_hf_swin_state({"embeddings.patch_embeddings.projection.weight": torch.zeros(4, 1, 4, 4),
                                    "encoder.layers.0.blocks.0.weird.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match="absolute"):
        tool.hf_config_to_swin_kwargs({"use_absolute_embeddings": True})
    assert tool.main([str(tmp_path / "missing"), "--out", str(tmp_path / "o.safetensors")]) == 2
    assert "no config.json" in capsys.readouterr().err
