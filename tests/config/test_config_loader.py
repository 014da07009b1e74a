"""Config loading: YAML + --set overrides, typing, errors naming keys, derived values, round trip."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional

import pytest
import yaml

from echocare.config import (
    ConfigError,
    OptimConfig,
    PretrainConfig,
    TrainConfig,
    all_keys,
    config_from_dict,
    config_to_dict,
    derive_schedule,
    describe_config,
    load_config,
    save_config,
)
from echocare.config.recipes import DEBUG_OVERRIDES, find_recipe

SHARDS = "data.shards=/tmp/shards"


def test_required_keys_exist():
    keys = all_keys(PretrainConfig)
    for key in ("train.max_steps", "train.batch_size", "train.ckpt_every", "train.seed", "data.shards",
                "model.name"):
        assert key in keys


def test_overrides_are_typed():
    cfg = load_config(PretrainConfig, overrides=[
        SHARDS, "train.max_steps=1_000", "optim.lr=1e-3", "optim.betas=0.9,0.95", "train.progress=false",
        "optim.clip_grad=null", "train.precision=bf16", "optim.warmup_fraction=0.1", "model.ontology=x.yaml",
    ])
    assert cfg.train.max_steps == 1000 and isinstance(cfg.train.max_steps, int)
    assert cfg.optim.lr == pytest.approx(1e-3) and isinstance(cfg.optim.lr, float)
    assert cfg.optim.betas == [0.9, 0.95]
    assert cfg.train.progress is False
    assert cfg.optim.clip_grad is None
    assert cfg.train.precision == "bf16"
    assert cfg.optim.warmup_fraction == pytest.approx(0.1)
    assert cfg.model.ontology == "x.yaml"


def test_yaml_then_overrides(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("train:\n  max_steps: 50\n  batch_size: 8\noptim:\n  lr: 1e-4\ndata:\n  shards: /x\n")
    cfg = load_config(PretrainConfig, path, ["train.batch_size=4"])
    assert (cfg.train.max_steps, cfg.train.batch_size, cfg.optim.lr) == (50, 4, 1e-4)
    assert cfg.model.name == PretrainConfig().model.name  # untouched default


def test_unknown_key_suggests_or_lists():
    with pytest.raises(ConfigError) as err:
        load_config(PretrainConfig, overrides=[SHARDS, "train.max_stpes=3"])
    assert str(err.value) == "--set train.max_stpes: unknown key (did you mean 'train.max_steps'?)"
    with pytest.raises(ConfigError, match=r"--set max_steps: unknown key \(did you mean 'train\.max_steps'\?\)"):
        load_config(PretrainConfig, overrides=[SHARDS, "max_steps=3"])
    with pytest.raises(ConfigError) as err:
        load_config(PretrainConfig, overrides=[SHARDS, "train.zzz=3"])
    assert "train.zzz: unknown key; valid keys: train.max_steps, train.batch_size," in str(err.value)


def test_unknown_key_in_yaml_names_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("optim:\n  weight_decy: 0.1\n")
    with pytest.raises(ConfigError, match=r"config \S*bad\.yaml: optim\.weight_decy: unknown key \(did you mean "
                                          r"'optim\.weight_decay'\?\)"):
        load_config(PretrainConfig, path)


@pytest.mark.parametrize("override, pattern", [
    ("train.precision=bf32", r"--set train\.precision: expected one of auto, bf16, fp16, fp32, got 'bf32'"),
    ("train.max_steps=ten", r"--set train\.max_steps: expected an integer, got 'ten'"),
    ("optim.lr=fast", r"--set optim\.lr: expected a number, got 'fast'"),
    ("train.progress=maybe", r"--set train\.progress: expected true or false, got 'maybe'"),
    ("optim.clip_grad=big", r"--set optim\.clip_grad: expected a number or null, got 'big'"),
    ("train.max_steps=0", r"train\.max_steps must be > 0"),
    ("optim.betas=0.9", r"optim\.betas must be two values"),
    ("data.mask_patch_size=10", r"data\.mask_patch_size \(10\) must be a multiple of model\.patch_size"),
    ("model.target_norm_patch=7", r"model\.target_norm_patch must be 0 or a block side >= 2 dividing"),
    ("data.crop_p=1.5", r"data\.crop_p must be a probability in \[0, 1\], got 1\.5"),
    ("data.crop_scale=0.5,0.2", r"data\.crop_scale must be \[min, max\] with 0 < min <= max <= 1"),
    ("train", r"must look like key=value"),
    ("train=3", r"--set train: is a section; set one of its keys, e\.g\. train\.max_steps"),
])
def test_bad_values_name_the_key(override, pattern):
    with pytest.raises(ConfigError, match=pattern):
        load_config(PretrainConfig, overrides=[SHARDS, override])


def test_normalised_targets_need_the_linear_output():
    with pytest.raises(ConfigError, match=r"model\.target_norm_patch needs model\.decoder_output=linear"):
        load_config(PretrainConfig, overrides=[SHARDS, "model.decoder_output=sigmoid", "model.target_norm_patch=8"])
    assert load_config(PretrainConfig, overrides=[SHARDS, "model.target_norm_patch=8"]).model.target_norm_patch == 8


def test_missing_shards_is_an_error():
    with pytest.raises(ConfigError, match="data.shards is required"):
        load_config(PretrainConfig)
    assert load_config(PretrainConfig, validate=False).data.shards == ""


def test_resampled_needs_epoch_length():
    with pytest.raises(ConfigError, match="data.epoch_length"):
        load_config(PretrainConfig, overrides=[SHARDS, "data.resampled=true"])


def test_derived_values():
    train = TrainConfig(batch_size=32, grad_accum=2, max_steps=1000)
    optim = OptimConfig(lr=1e-4, lr_ref_batch=256, warmup_steps=10_000, min_lr_ratio=0.1)
    d = derive_schedule(train, optim, world_size=8)
    assert d.effective_batch == 512
    assert d.peak_lr == pytest.approx(2e-4)
    assert d.warmup_steps == 1000  # clipped to max_steps
    assert d.min_lr == pytest.approx(2e-5)
    optim.scale_lr = False
    optim.warmup_fraction = 0.05
    d = derive_schedule(train, optim, world_size=1)
    assert d.peak_lr == pytest.approx(1e-4) and d.warmup_steps == 50


def test_round_trip_and_saved_file(tmp_path):
    cfg = load_config(PretrainConfig, overrides=[SHARDS, "optim.betas=0.9,0.99", "train.seed=7"])
    out = save_config(cfg, tmp_path / "config.yaml", extra={"peak_lr": 1e-4})
    data = yaml.safe_load(out.read_text())
    assert data == config_to_dict(cfg)
    assert config_from_dict(PretrainConfig, data) == cfg
    assert "# peak_lr: 0.0001" in out.read_text()


def test_help_rows_cover_every_key():
    rows = describe_config(PretrainConfig)
    assert [r[0] for r in rows] == all_keys(PretrainConfig)
    assert all(r[3] for r in rows), "every field needs a help string"


@dataclass
class _Head:
    kind: Literal["linear", "mlp"] = "linear"
    hidden: Optional[int] = None


@dataclass
class _FinetuneLike:
    head: _Head = field(default_factory=_Head)
    train: TrainConfig = field(default_factory=TrainConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)


def test_generic_loader_for_other_configs():
    cfg = load_config(_FinetuneLike, overrides=["head.kind=mlp", "head.hidden=64", "train.max_steps=5"])
    assert (cfg.head.kind, cfg.head.hidden, cfg.train.max_steps) == ("mlp", 64, 5)
    with pytest.raises(ConfigError, match="head.kind: expected one of linear, mlp, got 'conv'"):
        load_config(_FinetuneLike, overrides=["head.kind=conv"])


def test_recipes_load_and_debug_fallback_matches():
    for name in ("pretrain/echocare_swin_base.yaml", "pretrain/echocare_swin_large.yaml", "pretrain/debug.yaml",
                 "pretrain/small.yaml"):
        path = find_recipe(name)
        assert path is not None, name
        cfg = load_config(PretrainConfig, path, [SHARDS])
        assert cfg.optim.eps == 1e-8 and cfg.optim.betas[1] == 0.999
    base = load_config(PretrainConfig, find_recipe("pretrain/echocare_swin_base.yaml"), [SHARDS])
    assert base.train.max_steps == 1_000_000 and base.optim.warmup_steps == 10_000
    assert base.optim.weight_decay == 0.05 and base.model.drop_path_rate == 0.1
    assert base.model.img_size == 256 and base.optim.schedule == "cosine"
    assert derive_schedule(base.train, base.optim, 8).effective_batch == 256
    from_yaml = load_config(PretrainConfig, find_recipe("pretrain/debug.yaml"), [SHARDS])
    from_code = load_config(PretrainConfig, None, list(DEBUG_OVERRIDES) + [SHARDS])
    assert from_yaml == from_code


def test_docs_reference_lists_every_key():
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "pretraining.md").read_text()
    for key, tp, default, help_text in describe_config(PretrainConfig):
        assert f"| `{key}` | `{tp}` | `{default}` | {help_text.replace('|', '/')} |" in doc, key


def test_a_command_line_budget_replaces_the_recipe_budget():
    """Recipes give train.epochs; --set train.max_steps=N alone means N steps instead (and vice versa)."""
    from echocare.config import load_config
    from echocare.config.finetune import FinetuneConfig, budget_overrides

    recipe = "recipes/finetune/segmentation.yaml"
    steps = load_config(FinetuneConfig, recipe, budget_overrides(["data.root=x", "train.max_steps=7"]))
    assert steps.train.max_steps == 7 and steps.train.epochs is None
    both = budget_overrides(["train.max_steps=7", "train.epochs=2"])
    assert both == ["train.max_steps=7", "train.epochs=2"]  # both given: kept (the job checks they agree)
    assert budget_overrides(["train.epochs=3"]) == ["train.max_steps=null", "train.epochs=3"]
    assert load_config(FinetuneConfig, recipe, ["data.root=x"]).train.epochs == 50
