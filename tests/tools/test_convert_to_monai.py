"""tools/convert_to_monai.py + echocare.models.monai_compat: MONAI swinViT reproduces timm features."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch
from monai.networks.nets import SwinUNETR
from monai.networks.nets.swin_unetr import SwinTransformer as MonaiSwin
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from echocare.models import create_encoder
from echocare.models.monai_compat import (
    convert_timm_swin_to_monai,
    load_into_monai,
    monai_incompatibilities,
    monai_swin_kwargs,
    swin_unetr_problems,
)

TOOL = Path(__file__).resolve().parents[2] / "tools" / "convert_to_monai.py"


def _tool():
    spec = importlib.util.spec_from_file_location("convert_to_monai", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _encoder(img_size: int):
    torch.manual_seed(0)
    enc = create_encoder("echocare_swin_debug", img_size=img_size, patch_size=2, window_size=4, depths=(2, 2, 2, 2),
                         drop_path_rate=0.0).eval()
    with torch.no_grad():  # non-trivial norms so a swapped/misnamed norm would show
        for name, p in enc.named_parameters():
            if "norm" in name or name.endswith("bias"):
                p.add_(0.1 * torch.randn_like(p))
    return enc


def _export(enc, path: Path) -> Path:
    meta = {"format": "echocare-encoder", "architecture": enc.timm_architecture,
            "model_args": json.dumps(enc.timm_kwargs)}
    save_file(enc.stock_state_dict(), str(path), meta)
    return path


def _monai_stage_outputs(net: MonaiSwin, x: torch.Tensor):
    """Block outputs of each MONAI stage (before its patch merging), NCHW, plus forward's outputs."""
    taps = {}
    hooks = [getattr(net, f"layers{i + 1}")[0].blocks[-1].register_forward_hook(
        lambda _m, _i, out, i=i: taps.__setitem__(i, out.permute(0, 3, 1, 2))) for i in range(4)]
    outs = net(x, normalize=False)
    for h in hooks:
        h.remove()
    return [taps[i] for i in range(4)], outs


def test_tool_conversion_matches_timm_features(tmp_path: Path) -> None:
    enc = _encoder(64)
    src = _export(enc, tmp_path / "enc.safetensors")
    out = tmp_path / "swinvit.safetensors"
    assert _tool().main([str(src), "--out", str(out), "--prefix", ""]) == 0
    with safe_open(str(out), framework="pt") as f:
        meta = f.metadata()
    kwargs = json.loads(meta["monai_kwargs"])
    assert json.loads(meta["incompatibilities"]) == []
    net = MonaiSwin(**kwargs).eval()
    state = load_file(str(out))
    result = net.load_state_dict(state, strict=False)
    assert result.unexpected_keys == []
    assert sorted(result.missing_keys) == sorted(json.loads(meta["uninitialised"]))

    x = torch.rand(2, 1, 64, 64)
    with torch.no_grad():
        ref = enc.forward_intermediates(x, intermediates_only=True)
        stages, outs = _monai_stage_outputs(net, x)
        embed = enc.patch_embed(x)  # (B, h, w, D)
        torch.testing.assert_close(outs[0], embed.permute(0, 3, 1, 2), atol=1e-5, rtol=1e-5)
        for i in range(4):  # every stage's blocks give the same features
            torch.testing.assert_close(stages[i], ref[i], atol=1e-4, rtol=1e-4)
        for i in range(3):  # MONAI's stage output = timm's next patch merging applied to stage i
            merged = enc.layers[i + 1].downsample(ref[i].permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
            torch.testing.assert_close(outs[i + 1], merged, atol=1e-4, rtol=1e-4)
    assert not torch.allclose(ref[3], torch.zeros_like(ref[3]))


def test_loads_into_swin_unetr_with_prefix(tmp_path: Path) -> None:
    enc = _encoder(64)
    conversion = convert_timm_swin_to_monai(enc.stock_state_dict(), prefix="swinViT.")
    kw = monai_swin_kwargs(enc.timm_kwargs)
    net = SwinUNETR(in_channels=1, out_channels=2, spatial_dims=2, patch_size=kw["patch_size"][0],
                    window_size=kw["window_size"], feature_size=kw["embed_dim"], depths=kw["depths"],
                    num_heads=kw["num_heads"], patch_norm=True).eval()
    load_into_monai(net, conversion)
    x = torch.rand(1, 1, 64, 64)
    with torch.no_grad():
        stages, _ = _monai_stage_outputs(net.swinViT, x)
        ref = enc.forward_intermediates(x, intermediates_only=True)
        assert net(x).shape == (1, 2, 64, 64)
    torch.testing.assert_close(stages[2], ref[2], atol=1e-4, rtol=1e-4)
    assert "norm.weight" in conversion.dropped and "mask_token" not in conversion.state_dict
    assert swin_unetr_problems(kw) == []
    base_like = dict(kw, embed_dim=128, patch_size=(4, 4))
    assert len(swin_unetr_problems(base_like)) == 2


def test_window_larger_than_grid_is_refused(tmp_path: Path) -> None:
    enc = _encoder(32)  # stage 3 grid 2 < window 4: timm shrinks the window and its bias table
    assert any("stage 3" in p for p in monai_incompatibilities(enc.timm_kwargs, 32))
    with pytest.raises(ValueError, match="smaller than the window"):
        convert_timm_swin_to_monai(enc.stock_state_dict())


def test_padding_beyond_shift_is_reported_and_really_differs() -> None:
    enc = _encoder(80)  # grids 40, 20, 10, 5: stage 3 pads 5 -> 8 (pad 3 > shift 2)
    problems = monai_incompatibilities(enc.timm_kwargs, 80)
    assert len(problems) == 2 and all("stage 3" in p for p in problems)  # H and W
    net = MonaiSwin(**monai_swin_kwargs(enc.timm_kwargs)).eval()
    load_into_monai(net, convert_timm_swin_to_monai(enc.stock_state_dict()))
    x = torch.rand(1, 1, 80, 80)
    with torch.no_grad():
        stages, _ = _monai_stage_outputs(net, x)
        ref = enc.forward_intermediates(x, intermediates_only=True)
    torch.testing.assert_close(stages[2], ref[2], atol=1e-4, rtol=1e-4)  # pad 2 <= shift 2: same
    assert (stages[3] - ref[3]).abs().max() > 1e-2  # roll-then-pad vs pad-then-roll


def test_unexpressible_architecture_and_bad_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="exactly 4 stages"):
        monai_swin_kwargs({"embed_dim": 24, "depths": [2, 2, 2], "num_heads": [1, 2, 4], "window_size": 4,
                           "patch_size": 2})
    with pytest.raises(ValueError, match="not a key of a timm Swin"):
        convert_timm_swin_to_monai({"decoder.proj.weight": torch.zeros(1)})
    assert _tool().main([str(tmp_path / "missing.safetensors"), "--out", str(tmp_path / "o.safetensors")]) == 2
