"""echocare.load_backbone: from echocare exports and from stock timm Swin checkpoints."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import save_file

import echocare
from echocare.models import EchoCareSwin, create_encoder
from echocare.models.hub import adapt_patch_embed, infer_swin_kwargs


def _encoder() -> EchoCareSwin:
    torch.manual_seed(0)
    return create_encoder("echocare_swin_debug", img_size=64, patch_size=4, window_size=4, drop_path_rate=0.0)


def _save_export(enc: EchoCareSwin, path: Path, full: bool = False) -> Path:
    state = {f"encoder.{k}": v for k, v in enc.state_dict().items()} if full else enc.stock_state_dict()
    if full:
        state["decoder.proj.weight"] = torch.zeros(3, 3)
    meta = {"format": "echocare-full" if full else "echocare-encoder", "architecture": enc.timm_architecture,
            "model_args": json.dumps(enc.timm_kwargs)}
    save_file({k: v.contiguous() for k, v in state.items()}, str(path), meta)
    return path


def test_load_backbone_from_encoder_and_full_export(tmp_path: Path) -> None:
    enc = _encoder().eval()
    x = torch.rand(2, 1, 64, 64)
    with torch.no_grad():
        ref = enc.forward_intermediates(x, intermediates_only=True)
    backbone = echocare.load_backbone(_save_export(enc, tmp_path / "enc.safetensors")).eval()
    assert isinstance(backbone, EchoCareSwin) and backbone.timm_architecture == enc.timm_architecture
    assert backbone.mask_token.shape == enc.mask_token.shape
    assert not torch.equal(backbone.mask_token, enc.mask_token)  # encoder exports carry no mask token
    with torch.no_grad():
        got = backbone.forward_intermediates(x, intermediates_only=True)
    for a, b in zip(got, ref):
        torch.testing.assert_close(a, b)
    full = echocare.load_backbone(_save_export(enc, tmp_path / "full.safetensors", full=True))
    assert torch.equal(full.mask_token, enc.mask_token)  # a --full export restores it
    assert echocare.load_backbone(tmp_path / "enc.safetensors", drop_path_rate=0.2).layers[1].blocks[0] \
        .drop_path1.drop_prob > 0


def _stock(tmp_path: Path, suffix: str = ".safetensors") -> tuple[torch.nn.Module, Path]:
    torch.manual_seed(1)
    stock = timm.create_model("swin_tiny_patch4_window7_224", pretrained=False, img_size=64, window_size=4,
                              embed_dim=24, depths=(2, 1, 1, 1), num_heads=(1, 2, 4, 8), num_classes=5).eval()
    path = tmp_path / f"stock{suffix}"
    if suffix == ".safetensors":
        save_file(stock.state_dict(), str(path))
    else:
        torch.save({"model": stock.state_dict()}, path)
    return stock, path


def test_load_backbone_from_stock_timm_swin_rgb_to_gray(tmp_path: Path) -> None:
    stock, path = _stock(tmp_path)
    assert infer_swin_kwargs(stock.state_dict())["depths"] == [2, 1, 1, 1]
    gray = echocare.load_backbone(path, img_size=64).eval()
    assert gray.in_chans == 1 and gray.num_classes == 0
    x = torch.rand(2, 1, 64, 64)
    with torch.no_grad():  # a gray image seen as (x, x, x) by the RGB model: same features
        want = stock.forward_intermediates(x.repeat(1, 3, 1, 1), intermediates_only=True)
        got = gray.forward_intermediates(x, intermediates_only=True)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
    rgb = echocare.load_backbone(path, img_size=64, in_chans=3)
    assert torch.equal(rgb.patch_embed.proj.weight, stock.patch_embed.proj.weight)
    # default size 256: stage 3 no longer shrinks its window, the 3x3 bias table is resized to 7x7
    big = echocare.load_backbone(path)
    assert big.layers[3].blocks[0].attn.relative_position_bias_table.shape[0] == 49


def test_load_backbone_from_torch_file_uses_weights_only(tmp_path: Path) -> None:
    stock, path = _stock(tmp_path, suffix=".pth")
    backbone = echocare.load_backbone(path, img_size=64, in_chans=3)
    assert torch.equal(backbone.layers[0].blocks[1].attn.qkv.weight, stock.layers[0].blocks[1].attn.qkv.weight)


def test_adapt_patch_embed_and_errors(tmp_path: Path) -> None:
    w = torch.randn(4, 3, 2, 2)
    assert torch.equal(adapt_patch_embed(w, 1), w.sum(1, keepdim=True))
    assert torch.allclose(adapt_patch_embed(w[:, :1], 3).sum(1, keepdim=True), w[:, :1])
    with pytest.raises(ValueError, match="from 3 to 2"):
        adapt_patch_embed(w, 2)
    with pytest.raises(FileNotFoundError, match="no weights file"):
        echocare.load_backbone(tmp_path / "missing.safetensors")
    other = tmp_path / "other.safetensors"
    save_file({"fc.weight": torch.zeros(2, 2)}, str(other))
    with pytest.raises(ValueError, match="no Swin encoder weights"):
        echocare.load_backbone(other)
    enc = _encoder()
    path = _save_export(enc, tmp_path / "enc.safetensors")
    with pytest.raises(ValueError, match="do not fit"):
        echocare.load_backbone(path, embed_dim=48)
    (tmp_path / "w.txt").write_text("x")
    with pytest.raises(ValueError, match="unknown weights format"):
        echocare.load_backbone(tmp_path / "w.txt")


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('ran')",))


def _with_meta(tmp_path: Path, name: str, **changes) -> Path:
    enc = _encoder()
    meta = {"format": "echocare-encoder", "architecture": enc.timm_architecture,
            "model_args": json.dumps(enc.timm_kwargs)}
    meta.update(changes)
    path = tmp_path / name
    save_file({k: v.contiguous() for k, v in enc.stock_state_dict().items()}, str(path), meta)
    return path


def test_load_backbone_refuses_untrusted_metadata_before_allocating(tmp_path: Path) -> None:
    from echocare.models.hub import WeightsFileError

    args = json.loads(json.dumps(_encoder().timm_kwargs))
    huge = dict(args, embed_dim=2048, depths=[64, 64, 64, 64], num_heads=[32, 64, 128, 256])  # ~800 GB
    cases = {
        "huge": (_with_meta(tmp_path, "huge.safetensors", model_args=json.dumps(huge)), r"e9 parameters"),
        "big_img": (_with_meta(tmp_path, "img.safetensors", model_args=json.dumps(dict(args, img_size=100000))),
                    r"img_size=100000 is outside"),
        "arch": (_with_meta(tmp_path, "arch.safetensors", architecture="vit_huge_patch14_224"),
                 r"'vit_huge_patch14_224' is neither an echocare encoder nor a timm Swin"),
        "args": (_with_meta(tmp_path, "args.safetensors", model_args=json.dumps(dict(args, norm_layer="x"))),
                 r"unexpected model_args \['norm_layer'\]"),
        "list": (_with_meta(tmp_path, "list.safetensors", model_args="[1, 2]"), "not a JSON object"),
    }
    for name, (path, match) in cases.items():
        with pytest.raises(WeightsFileError, match=match) as info:
            echocare.load_backbone(path)
        assert "\n" not in str(info.value), name


def test_load_backbone_refuses_pickles_and_truncated_files(tmp_path: Path) -> None:
    from echocare.models.hub import WeightsFileError

    marker = tmp_path / "payload-ran"
    torch.save({"model": {"w": torch.ones(2)}, "x": _Payload(marker)}, tmp_path / "evil.pth")
    (tmp_path / "evil.safetensors").write_bytes((tmp_path / "evil.pth").read_bytes())  # a pickle renamed
    good = _with_meta(tmp_path, "good.safetensors").read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(good[: len(good) // 2])
    for name, match in (("evil.pth", "weights_only=True"), ("evil.safetensors", "not a readable safetensors"),
                        ("cut.safetensors", "not a readable safetensors")):
        with pytest.raises(WeightsFileError, match=match) as info:
            echocare.load_backbone(tmp_path / name)
        assert "\n" not in str(info.value) and name in str(info.value)
    assert not marker.exists()
