"""model.head_init=decoder: a segmentation / enhancement head starts from the ``unetr`` pretraining decoder."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import save_file

from echocare.config import ConfigError, load_config
from echocare.config.finetune import FinetuneConfig
from echocare.config.schema import PretrainConfig
from echocare.data.labeled.examples import make_example_dataset
from echocare.errors import DataError
from echocare.jobs.export import export_encoder
from echocare.jobs.finetune import run_finetune
from echocare.models import create_model
from echocare.tasks.finetune import (build_backbone, build_finetune_model, head_arguments, init_head_from_decoder,
                                     read_pretrained_decoder)

ARCH = {"img_size": 64, "patch_size": 4, "window_size": 4}


def _export(root: Path, decoder: str, decoder_dim: int | None = 8) -> tuple[Path, Path, dict]:
    """A pretraining run of the debug model with ``decoder``, exported --full and encoder-only.

    Returns ``(full export, encoder export, decoder state)``; the weights are moved off their initialisation,
    so a head left fresh would not match them."""
    torch.manual_seed(0)
    model = create_model("echocare_swin_debug", ontology=None, drop_path_rate=0.0, decoder=decoder,
                         decoder_dim=decoder_dim, **ARCH)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    ckpt = root / "checkpoints" / "step-00000005"
    ckpt.mkdir(parents=True)
    (root / "config.yaml").write_text(yaml.safe_dump({"model": {"name": "echocare_swin_debug", "decoder": decoder,
                                                                "ontology": None, **ARCH}}))
    save_file({f"model.{k}": v.clone().contiguous() for k, v in model.state_dict().items()},
              str(ckpt / "model.safetensors"))
    (ckpt / "trainer_state.json").write_text(json.dumps({"step": 5}))
    (ckpt / "COMPLETE").write_text("5\n")
    full = export_encoder(root, root / "full.safetensors", full=True)
    enc = export_encoder(root, root / "encoder.safetensors")
    return full, enc, {k: v.clone() for k, v in model.decoder.state_dict().items()}


@pytest.fixture(scope="module")
def unetr_run(tmp_path_factory):
    return _export(tmp_path_factory.mktemp("unetr"), "unetr")


def _model(init: Path, task: str, num_outputs: int, **head):
    backbone = build_backbone(str(init), "echocare_swin_debug", 64, drop_path_rate=0.0)
    if task in ("segmentation", "enhancement"):
        head = {"feature_size": 8, **head}
    return build_finetune_model(backbone, task, head_arguments(task, num_outputs, False, head))


def test_unetr_decoder_reconstructs_with_the_segmentation_heads_layout(unetr_run):
    full, _, decoder = unetr_run
    head = _model(full, "segmentation", 3).head.state_dict()
    net = {k[len("net."):]: v for k, v in decoder.items()}
    assert set(net) == set(head)
    assert [k for k in net if net[k].shape != head[k].shape] == ["out.conv.conv.weight", "out.conv.conv.bias"]
    model = create_model("echocare_swin_debug", ontology=None, decoder="unetr", decoder_dim=8,
                         decoder_output="sigmoid", **ARCH)
    out = model(torch.rand(2, 1, 64, 64), (torch.rand(2, 16, 16) < 0.5).float())
    assert out["recon"].shape == (2, 1, 64, 64) and 0 <= out["recon"].min() and out["recon"].max() <= 1
    out["loss"].backward()
    assert all(p.grad is not None for p in model.decoder.parameters())


def test_segmentation_head_takes_every_decoder_tensor_but_the_class_output(unetr_run):
    full, _, decoder = unetr_run
    model = _model(full, "segmentation", 3)
    fresh_out = model.head.out.conv.conv.weight.clone()
    init_head_from_decoder(model.head, read_pretrained_decoder(full), str(full))
    head = model.head.state_dict()
    for k, v in decoder.items():
        name = k[len("net."):]
        if name.startswith("out."):
            continue
        assert torch.equal(head[name], v), name
    assert torch.equal(model.head.out.conv.conv.weight, fresh_out)  # (3 classes: left fresh)


def test_enhancement_head_takes_the_output_block_too_and_keeps_its_discriminator(unetr_run):
    full, _, decoder = unetr_run
    model = _model(full, "enhancement", 1)
    disc = {k: v.clone() for k, v in model.head.discriminator.state_dict().items()}
    init_head_from_decoder(model.head, read_pretrained_decoder(full), str(full))
    assert torch.equal(model.head.out.conv.conv.weight, decoder["net.out.conv.conv.weight"])
    assert all(torch.equal(model.head.discriminator.state_dict()[k], v) for k, v in disc.items())


def test_refusals_name_the_fix(unetr_run, tmp_path):
    full, enc, _ = unetr_run
    with pytest.raises(DataError, match="needs a --full export"):
        read_pretrained_decoder(enc)
    simmim_full = _export(tmp_path / "simmim", "simmim", None)[0]
    with pytest.raises(DataError, match="holds no unetr decoder"):
        read_pretrained_decoder(simmim_full)
    decoder = read_pretrained_decoder(full)
    with pytest.raises(DataError, match="model.decoder_dim equal to the head's feature_size"):
        init_head_from_decoder(_model(full, "segmentation", 2, feature_size=16).head, decoder, str(full))
    with pytest.raises(DataError, match="layout differs"):
        init_head_from_decoder(_model(full, "segmentation", 2, image_stem=False).head, decoder, str(full))
    with pytest.raises(DataError, match="has no pyramid decoder"):
        init_head_from_decoder(_model(full, "classification", 2).head, decoder, str(full))


def test_config_checks():
    with pytest.raises(ConfigError, match="head_init=decoder takes the decoder from model.init"):
        load_config(FinetuneConfig, None, ["data.root=x", "model.head_init=decoder"])
    with pytest.raises(ConfigError, match="simmim decoder has none"):
        load_config(PretrainConfig, None, ["data.shards=x", "model.decoder_dim=8"])
    with pytest.raises(ConfigError, match="positive width"):
        load_config(PretrainConfig, None, ["data.shards=x", "model.decoder=unetr", "model.decoder_dim=0"])
    cfg = load_config(PretrainConfig, None, ["data.shards=x", "model.decoder=unetr", "model.decoder_dim=8"])
    assert (cfg.model.decoder, cfg.model.decoder_dim) == ("unetr", 8)


def test_finetune_job_starts_its_head_from_the_decoder(unetr_run, tmp_path, caplog):
    full, _, _ = unetr_run
    root = make_example_dataset("segmentation", tmp_path / "seg", patients=3, frames=2, size=40)
    cfg = load_config(FinetuneConfig, None, [
        "task=segmentation", f"data.root={root}", f"model.init={full}", "model.head_init=decoder",
        'model.head={"feature_size": 8}', "model.img_size=64", "train.max_steps=1", "train.batch_size=2",
        "train.progress=false", "train.tensorboard=false", "train.precision=fp32", "data.num_workers=0",
        r"data.group_regex=(patient\d+)", "eval.n_bootstrap=10"])
    with caplog.at_level(logging.INFO, logger="echocare.tasks.finetune.model"):
        summary = run_finetune(cfg, tmp_path / "run")
    assert summary["step"] == 1
    assert any("head: decoder from" in r.getMessage() and "fresh: out.conv.conv.weight" in r.getMessage()
               for r in caplog.records)


def test_finetune_job_refuses_a_decoder_that_does_not_fit_before_writing(unetr_run, tmp_path):
    full, _, _ = unetr_run
    root = make_example_dataset("segmentation", tmp_path / "seg", patients=3, frames=2, size=40)
    cfg = load_config(FinetuneConfig, None, [
        "task=segmentation", f"data.root={root}", f"model.init={full}", "model.head_init=decoder",
        'model.head={"feature_size": 16}', "model.img_size=64", "train.max_steps=1", "train.precision=fp32",
        r"data.group_regex=(patient\d+)"])
    with pytest.raises(DataError, match="model.decoder_dim equal to the head's feature_size"):
        run_finetune(cfg, tmp_path / "run")
    assert not (tmp_path / "run").exists()
