"""Weight initialisation of fresh pretraining models (``create_model(weight_init=...)``)."""

from pathlib import Path

import pytest
import torch

import echocare
from echocare.models.weight_init import init_pretraining_weights


def _model(init, decoder="simmim", seed=0):
    torch.manual_seed(seed)
    return echocare.create_model("echocare_swin_nano", ontology=None, img_size=64, decoder=decoder,
                                 decoder_dim=8 if decoder != "simmim" else None, weight_init=init)


def _tables(model):
    return [p for n, p in model.encoder.named_parameters() if n.endswith("relative_position_bias_table")]


def test_normal_init_is_hf_swin_for_masked_image_modeling():
    model = _model("normal")
    proj, head = model.encoder.patch_embed.proj, model.decoder.proj
    for layer in (proj, head):
        assert torch.count_nonzero(layer.bias) == 0
        assert layer.weight.std().item() == pytest.approx(0.02, rel=0.15)
        assert layer.weight.abs().max().item() > 2 * 0.02  # a plain normal, not truncated at 2 std
    assert torch.count_nonzero(model.encoder.mask_token) == 0
    assert _tables(model) and all(torch.count_nonzero(t) == 0 for t in _tables(model))


def test_timm_init_leaves_the_network_as_built():
    model = _model("timm")
    proj, head = model.encoder.patch_embed.proj, model.decoder.proj
    # PyTorch's conv default: Kaiming-uniform weights and a uniform bias of +-1/sqrt(fan_in), fan_in = C*p*p = 16
    assert proj.weight.abs().max().item() <= 0.25 + 1e-6 and proj.weight.std().item() > 0.1
    assert torch.count_nonzero(proj.bias) == proj.bias.numel()
    assert torch.count_nonzero(head.bias) == head.bias.numel()
    assert torch.count_nonzero(model.encoder.mask_token) > 0
    assert all(torch.count_nonzero(t) > 0 for t in _tables(model))


def test_init_touches_only_the_named_tensors():
    normal, timm = _model("normal"), _model("timm")
    changed = {n for n, p in normal.state_dict().items() if not torch.equal(p, timm.state_dict()[n])}
    # same seed: everything else is drawn identically (the re-initialisation draws after construction)
    assert changed == {"encoder.patch_embed.proj.weight", "encoder.patch_embed.proj.bias", "encoder.mask_token",
                       "decoder.proj.weight", "decoder.proj.bias",
                       *(n for n in normal.state_dict() if n.endswith("relative_position_bias_table"))}


def test_other_decoders_keep_their_own_init():
    normal, timm = _model("normal", decoder="progressive"), _model("timm", decoder="progressive")
    for name, param in normal.decoder.state_dict().items():
        assert torch.equal(param, timm.decoder.state_dict()[name]), name
    assert torch.count_nonzero(normal.encoder.patch_embed.proj.bias) == 0  # the encoder still is


def test_unknown_scheme_is_refused():
    with pytest.raises(ValueError, match="unknown weight init 'xavier'; choose one of normal, timm"):
        init_pretraining_weights(_model("timm"), "xavier")


def test_config_key_reaches_the_model():
    from echocare.config import ConfigError, PretrainConfig, load_config
    from echocare.jobs.pretrain import build_pretrain_task

    recipe = Path(__file__).resolve().parents[2] / "recipes" / "pretrain" / "debug.yaml"
    cfg = load_config(PretrainConfig, recipe, ["data.shards=x", "model.weight_init=timm", "model.hie_weight=0"])
    task, _ = build_pretrain_task(cfg)
    assert torch.count_nonzero(task.model.encoder.mask_token) > 0
    cfg = load_config(PretrainConfig, recipe, ["data.shards=x", "model.hie_weight=0"])
    task, _ = build_pretrain_task(cfg)
    assert torch.count_nonzero(task.model.encoder.mask_token) == 0
    with pytest.raises(ConfigError, match="model.weight_init"):
        load_config(PretrainConfig, recipe, ["data.shards=x", "model.weight_init=xavier"])
