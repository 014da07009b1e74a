"""L_HIE is turned off (and says so) when the shards' index lists fewer distinct label paths than
``model.hie_min_labels``: with one label path every labeled image has the same target."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from echocare.cli import main
from echocare.config import ConfigError, PretrainConfig, load_config
from echocare.config.recipes import find_recipe
from echocare.data.build import build_shards
from echocare.jobs.pretrain import resolve_hie_weight

DEBUG = str(find_recipe("pretrain/debug.yaml"))


@pytest.fixture(autouse=True)
def _fresh_accelerate_state():
    from accelerate.state import AcceleratorState, GradientState

    yield
    AcceleratorState._reset_state(True)
    GradientState._reset_state()


def _cfg(*sets: str) -> PretrainConfig:
    return load_config(PretrainConfig, None, ["data.shards=x", *sets])


@pytest.mark.parametrize("labels, sets, off", [
    ({"fetus/brain/transthalamic": 789}, [], True),
    ({"fetus/brain/transthalamic": 789, "abdomen/liver": 0}, [], True),  # a zero count is not a label
    ({"fetus/brain/transthalamic": 500, "abdomen/liver": 289}, [], False),
    ({"fetus/brain/transthalamic": 789}, ["model.hie_min_labels=1"], False),
    ({"fetus/brain": 5, "abdomen/liver": 5}, ["model.hie_min_labels=3"], True),
    ({}, [], False),  # no label counts in the index: nothing is known, L_HIE stays
    ({"fetus/brain/transthalamic": 789}, ["model.hie_weight=0"], False),  # already off: nothing to say
])
def test_resolve_hie_weight(labels, sets, off):
    cfg = _cfg(*sets)
    out, reason = resolve_hie_weight(cfg, {"shards": [], "labels": labels})
    if off:
        assert out.model.hie_weight == 0 and cfg.model.hie_weight == 1.0  # a new config; the input is untouched
        assert "fetus/brain" in reason and f"model.hie_min_labels={cfg.model.hie_min_labels}" in reason
        assert out.model.name == cfg.model.name and out.data == cfg.data
    else:
        assert out is cfg and reason is None


def test_no_index_keeps_hie_and_the_field_is_validated():
    cfg = _cfg()
    assert resolve_hie_weight(cfg, None) == (cfg, None)
    with pytest.raises(ConfigError, match="hie_min_labels"):
        _cfg("model.hie_min_labels=0")


@pytest.fixture(scope="module")
def one_label_shards(tmp_path_factory) -> Path:
    """Twelve noise images of one dataset with one anatomy label, built into shards by the real builder."""
    root = tmp_path_factory.mktemp("one-label")
    pool = root / "pool"
    pool.mkdir()
    rng = np.random.default_rng(0)
    for i in range(12):
        Image.fromarray(rng.integers(0, 256, (64, 64), dtype=np.uint8)).save(pool / f"img{i:02d}.png")
    manifest = {"image_size": 64, "datasets": [{"name": "pool", "root": str(pool), "kind": "images",
                                                 "label": "fetus/brain/transthalamic"}]}
    (root / "manifest.yaml").write_text(yaml.safe_dump(manifest))
    index = build_shards(root / "manifest.yaml", root / "shards")
    assert index["labels"] == {"fetus/brain/transthalamic": 12}
    return root / "shards"


def _pretrain(shards: Path, run: Path, *extra: str) -> list[dict]:
    argv = ["pretrain", "--config", DEBUG, "--output-dir", str(run)]
    for s in (f"data.shards={shards}", "train.batch_size=4", "train.max_steps=2", "train.log_every=1",
              "train.ckpt_every=2", "train.progress=false", "train.tensorboard=false", "train.image_every=0", *extra):
        argv += ["--set", s]
    assert main(argv) == 0
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_one_label_pool_pretrains_mim_only_and_says_so(one_label_shards, tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="echocare.jobs.pretrain"):
        recs = _pretrain(one_label_shards, tmp_path / "auto")
    assert any("L_HIE is off for this run" in r.getMessage() and "fetus/brain/transthalamic (12 images)"
               in r.getMessage() for r in caplog.records)
    assert all(r["loss_hie"] == 0 for r in recs)
    assert yaml.safe_load((tmp_path / "auto" / "config.yaml").read_text())["model"]["hie_weight"] == 0  # what ran
    explicit = _pretrain(one_label_shards, tmp_path / "explicit", "model.hie_weight=0")
    assert [r["loss_mim"] for r in recs] == [r["loss_mim"] for r in explicit]  # the very run of hie_weight=0

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="echocare.jobs.pretrain"):
        recs = _pretrain(one_label_shards, tmp_path / "forced", "model.hie_min_labels=1")
    assert not any("L_HIE is off" in r.getMessage() for r in caplog.records)
    assert all(r["loss_hie"] > 0 for r in recs)
