"""EchoCareSwin: timm identity, mask token, strides, registry."""

import json
import warnings

import pytest
import timm
import torch

import echocare
from echocare.models import EchoCareSwin, create_encoder, list_models
from echocare.models.registry import _register_with_timm


def _images(b=2, c=1, h=64, w=64, seed=0):
    return torch.rand(b, c, h, w, generator=torch.Generator().manual_seed(seed))


def test_list_models_content():
    assert list_models() == [
        "echocare_swin_debug",
        "echocare_swin_nano",
        "echocare_swin_micro",
        "echocare_swin_tiny",
        "echocare_swin_small",
        "echocare_swin_base",
        "echocare_swin_large",
    ]
    assert echocare.list_models() == list_models()


def test_timm_create_model_after_import():
    model = timm.create_model("echocare_swin_debug", img_size=64)
    assert isinstance(model, EchoCareSwin)
    assert model.in_chans == 1 and model.patch_size == 4 and model.num_classes == 0
    assert "echocare_swin_base" in timm.list_models("echocare_*")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # registering again must neither warn nor overwrite
        _register_with_timm()
    assert isinstance(timm.create_model("echocare_swin_debug", img_size=64), EchoCareSwin)


def test_unknown_name_suggests():
    with pytest.raises(ValueError, match="echocare_swin_base"):
        create_encoder("echocare_swin_bse")
    assert create_encoder("debug", img_size=64).embed_dim == 24  # short form


@pytest.mark.parametrize(
    "kwargs",
    [dict(img_size=64), dict(img_size=(64, 96), in_chans=3), dict(img_size=64, patch_size=2),
     dict(img_size=64, window_size=[4, 4, 2, 2]), dict(img_size=64, window_size=(4, 2))],
    ids=["square", "nonsquare_rgb", "patch2", "per_stage_windows", "rect_window"],
)
def test_stock_timm_strict_load_gives_identical_features(kwargs):
    ours = create_encoder("echocare_swin_debug", **kwargs).eval()
    model_args = json.loads(json.dumps(ours.timm_kwargs))  # must be JSON-able
    assert ours.timm_architecture == "swin_tiny_patch4_window7_224"
    stock = timm.create_model(ours.timm_architecture, pretrained=False, **model_args).eval()
    assert type(stock) is timm.models.swin_transformer.SwinTransformer
    state = ours.state_dict()
    assert "mask_token" in state
    stock.load_state_dict(ours.stock_state_dict(), strict=True)
    size = ours.patch_embed.img_size
    x = _images(c=ours.in_chans, h=size[0], w=size[1])
    with torch.no_grad():
        torch.testing.assert_close(ours.forward_features(x), stock.forward_features(x), rtol=0, atol=0)


@pytest.mark.parametrize("patch_size", [4, 2])
def test_forward_intermediates_nchw_strides(patch_size):
    enc = create_encoder("echocare_swin_debug", img_size=64, patch_size=patch_size)
    x = _images(h=64, w=96)  # non-square and not the constructed size
    final, feats = enc.forward_intermediates(x)
    strides = [patch_size * 2**i for i in range(4)]
    assert [info["reduction"] for info in enc.feature_info] == strides
    for f, info, s in zip(feats, enc.feature_info, strides):
        assert f.shape == (2, info["num_chs"], 64 // s, 96 // s)
    assert final.shape == (2, 64 // strides[-1], 96 // strides[-1], enc.num_features)  # NHWC
    only = enc.forward_intermediates(x, indices=[1, 3], intermediates_only=True)
    assert [f.shape[1] for f in only] == [48, 192]
    assert [f.shape[1] for f in enc.forward_intermediates(x, indices=2, intermediates_only=True)] == [96, 192]
    assert [f.shape[1] for f in enc.forward_intermediates(x, indices=[-1], intermediates_only=True)] == [192]
    with pytest.raises(ValueError, match="out of range"):
        enc.forward_intermediates(x, indices=[4])
    with pytest.raises(ValueError, match="patch size"):
        enc.forward_features(_images(h=64, w=63))
    with pytest.raises(ValueError, match="in_chans"):
        enc.forward_features(_images(c=3))


def test_mask_token_semantics():
    enc = create_encoder("echocare_swin_debug", img_size=64, drop_path_rate=0.0).eval()
    a, b = _images(seed=1), _images(seed=2)
    with torch.no_grad():
        plain = enc.forward_features(a)
        torch.testing.assert_close(enc.forward_features(a, torch.zeros(2, 16, 16)), plain)
        half = torch.zeros(2, 16, 16)
        half[:, :8] = 1
        assert not torch.allclose(enc.forward_features(a, half), plain)
        # fully masked: every token is the mask token, the image no longer matters
        full = torch.ones(2, 16, 16)
        torch.testing.assert_close(enc.forward_features(a, full), enc.forward_features(b, full))
        # intermediates honour the mask the same way
        final, _ = enc.forward_intermediates(a, mask=half)
        torch.testing.assert_close(final, enc.forward_features(a, half))
    with pytest.raises(ValueError, match="token resolution"):
        enc.forward_features(a, torch.zeros(2, 64, 64))


def test_backbone_hooks():
    enc = create_encoder("echocare_swin_debug", img_size=64, drop_path_rate=0.0)
    nwd = enc.no_weight_decay()
    assert "mask_token" in nwd
    assert any("relative_position_bias_table" in n for n in nwd)
    assert set(enc.group_matcher()) == {"stem", "blocks"}
    x = _images()
    ref = enc.forward_features(x)
    enc.set_grad_checkpointing(True)
    assert all(stage.grad_checkpointing for stage in enc.layers)
    out = enc.forward_features(x)
    torch.testing.assert_close(out, ref)
    out.sum().backward()
    assert enc.patch_embed.proj.weight.grad is not None


def test_no_private_timm_api_in_echocare():
    """echocare uses only public timm names: no ``timm.*._module`` and no ``_name`` imported from timm."""
    import ast
    from pathlib import Path

    bad = []
    for path in Path(echocare.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("timm"):
                names = [node.module] + [a.name for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names if a.name.startswith("timm")]
            else:
                continue
            if any(part.startswith("_") for name in names for part in name.split(".")):
                bad.append(f"{path.name}:{node.lineno}")
        if "_ref_window_sizes" in path.read_text():
            bad.append(f"{path.name}: _ref_window_sizes")
    assert not bad, bad
