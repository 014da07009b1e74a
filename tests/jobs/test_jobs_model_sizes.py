"""Model sizes between debug and tiny; model.embed_dim / depths / num_heads in the pretrain and finetune
configs; exports of overridden architectures load strictly in stock timm."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import timm
import torch
import yaml
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from echocare.config import ConfigError, PretrainConfig, load_config
from echocare.config.finetune import FinetuneConfig
from echocare.jobs.export import export_encoder
from echocare.jobs.pretrain import build_pretrain_task
from echocare.models import create_encoder, list_models
from echocare.models.registry import check_architecture
from echocare.tasks.finetune import build_backbone


def _params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_one_machine_sizes_sit_between_debug_and_tiny():
    names = list_models()
    assert names.index("echocare_swin_debug") < names.index("echocare_swin_nano") < names.index(
        "echocare_swin_micro") < names.index("echocare_swin_tiny")
    sizes = [_params(create_encoder(n, img_size=64)) for n in
             ("echocare_swin_debug", "echocare_swin_nano", "echocare_swin_micro", "echocare_swin_tiny")]
    assert sizes == sorted(sizes) and len(set(sizes)) == 4
    nano = create_encoder("nano", img_size=64)
    assert nano.embed_dim == 32 and nano._depths == [2, 2, 2, 2] and nano._num_heads == [1, 2, 4, 8]
    assert [int(i["num_chs"]) for i in nano.feature_info] == [32, 64, 128, 256]


@pytest.mark.parametrize("args, pattern", [
    ((16, [2, 2], [1, 2, 4]), "differ in length"),
    ((24, [2, 2], [5, 2]), "not divisible"),
    ((0, [2], [1]), "positive"),
    ((16, [2, 0], [1, 2]), "positive"),
])
def test_check_architecture_rejects(args, pattern):
    with pytest.raises(ValueError, match=pattern):
        check_architecture(*args)
    with pytest.raises(ValueError, match=pattern):
        create_encoder("nano", img_size=64, embed_dim=args[0], depths=args[1], num_heads=args[2])


@pytest.mark.parametrize("cls, extra", [(PretrainConfig, ["data.shards=x"]), (FinetuneConfig, ["data.root=x"])])
def test_config_accepts_and_validates_architecture(cls, extra):
    cfg = load_config(cls, None, [*extra, "model.embed_dim=16", "model.depths=[1, 1, 2]", "model.num_heads=[1, 2, 4]"])
    assert cfg.model.embed_dim == 16 and cfg.model.depths == [1, 1, 2] and cfg.model.num_heads == [1, 2, 4]
    assert load_config(cls, None, extra).model.depths is None  # null = the named model's value
    for bad, pattern in ((["model.depths=[2, 2]", "model.num_heads=[1, 2, 4]"], "same length"),
                         (["model.embed_dim=24", "model.num_heads=[5]"], "does not divide"),
                         (["model.embed_dim=-8"], "embed_dim must be > 0"),
                         (["model.depths=[2, 0]"], "positive ints")):
        with pytest.raises(ConfigError, match=pattern):
            load_config(cls, None, [*extra, *bad])


def test_pretrain_override_exports_and_loads_in_stock_timm(tmp_path: Path):
    cfg = load_config(PretrainConfig, None, [
        "data.shards=x", "model.name=echocare_swin_nano", "model.img_size=64", "model.window_size=4",
        "model.embed_dim=16", "model.depths=[2, 1, 1]", "model.num_heads=[1, 2, 4]", "model.hie_weight=0",
        "model.drop_path_rate=0"])
    torch.manual_seed(0)
    task, _ = build_pretrain_task(cfg)
    enc = task.model.encoder
    assert enc.embed_dim == 16 and enc._depths == [2, 1, 1] and enc._num_heads == [1, 2, 4]
    ckpt = tmp_path / "run" / "checkpoints" / "step-00000001"
    ckpt.mkdir(parents=True)
    (tmp_path / "run" / "config.yaml").write_text(yaml.safe_dump(json.loads(json.dumps(
        {"model": vars(cfg.model)}))))
    save_file({k: v.contiguous() for k, v in task.state_dict().items()}, str(ckpt / "model.safetensors"))
    out = export_encoder(ckpt / "model.safetensors", tmp_path / "enc.safetensors")  # config: RUN/config.yaml
    with safe_open(str(out), framework="pt") as f:
        meta = f.metadata()
    args = json.loads(meta["model_args"])
    assert args["embed_dim"] == 16 and args["depths"] == [2, 1, 1] and args["num_heads"] == [1, 2, 4]
    stock = timm.create_model(meta["architecture"], pretrained=False, **args)
    assert type(stock).__name__ == "SwinTransformer"
    stock.load_state_dict(load_file(str(out)), strict=True)
    x = torch.rand(2, 1, 64, 64)
    stock.eval(), enc.eval()
    with torch.no_grad():
        torch.testing.assert_close(stock.forward_features(x), enc.forward_features(x))

    # fine-tuning from the export keeps the architecture; a contradicting override is a clear error
    back = build_backbone(str(out), "echocare_swin_base", 64, drop_path_rate=0.0)
    assert back.embed_dim == 16 and back._depths == [2, 1, 1]
    with pytest.raises(ValueError, match="model.embed_dim=32 but"):
        build_backbone(str(out), "echocare_swin_base", 64, embed_dim=32)
    rand = build_backbone("random", "echocare_swin_nano", 64, window_size=4, embed_dim=16, depths=[1, 1, 1],
                          num_heads=[1, 2, 4])
    assert rand.embed_dim == 16 and rand._depths == [1, 1, 1]
