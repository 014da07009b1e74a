"""Checkpoints: only complete ones count; stale writes are cleaned; clear errors; resume never unpickles."""

from __future__ import annotations

import json
import pickle
import random
import re
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from echocare.engine.checkpoint import MARKER, STATE_FILE, CheckpointManager


def _make(root, name, complete=True):
    d = root / name
    d.mkdir(parents=True)
    (d / "model.safetensors").write_bytes(b"x")
    if complete:
        (d / STATE_FILE).write_text('{"step": 1}')
        (d / MARKER).write_text("1\n")
    return d


def test_latest_ignores_incomplete_and_tmp(tmp_path):
    root = tmp_path / "checkpoints"
    _make(root, "step-00000010")
    _make(root, "step-00000020")
    _make(root, "step-00000030", complete=False)  # marker never written
    _make(root, "tmp-step-00000040")
    mgr = CheckpointManager(root)
    assert [s for s, _ in mgr.checkpoints()] == [10, 20]
    assert mgr.resolve("auto").name == "step-00000020"
    assert mgr.resolve(tmp_path).name == "step-00000020"  # a run directory
    mgr.clean_stale()
    assert not (root / "tmp-step-00000040").exists() and (root / "step-00000030").exists()


def test_resolve_errors_and_fresh_start(tmp_path):
    mgr = CheckpointManager(tmp_path / "checkpoints")
    assert mgr.resolve(None) is None
    assert mgr.resolve("auto") is None  # nothing yet: fresh run
    bad = _make(tmp_path, "half", complete=False)
    with pytest.raises(FileNotFoundError, match="not a complete checkpoint"):
        mgr.resolve(bad)
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="no complete checkpoint"):
        mgr.resolve(tmp_path / "run")


# --- resume never unpickles ------------------------------------------------------------------------------

class _Payload:
    """Unpickling this object writes ``marker`` (what an attacker would plant in a copied checkpoint)."""

    def __init__(self, marker) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('ran')",))


class _Stream:
    def __init__(self) -> None:
        self.pos = 0

    def __iter__(self):
        while True:
            g = torch.Generator().manual_seed(self.pos)
            self.pos += 1
            x = torch.randn(4, 6, generator=g)
            yield {"image": x, "y": x.sum(1, keepdim=True)}

    def state_dict(self):
        return {"pos": self.pos}

    def load_state_dict(self, state):
        self.pos = int(state["pos"])


class _Toy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(6, 8), nn.Dropout(0.3), nn.Linear(8, 1))

    def forward(self, batch):
        loss = (self.net(batch["image"]) - batch["y"]).pow(2).mean()
        return {"loss": loss, "logs": {}}


def _fit(run, max_steps, resume=None):
    from accelerate.state import AcceleratorState, GradientState

    from echocare.config import OptimConfig, TrainConfig
    from echocare.engine import Trainer

    tc = TrainConfig(max_steps=max_steps, batch_size=4, ckpt_every=2, log_every=1, image_every=0, progress=False,
                     precision="fp32", keep_last=5, tensorboard=False)
    try:
        return Trainer(tc, OptimConfig(lr=1e-2, lr_ref_batch=4, warmup_steps=1), run).fit(_Toy(), _Stream(),
                                                                                          resume=resume)
    finally:
        AcceleratorState._reset_state(True)
        GradientState._reset_state()


@pytest.fixture(scope="module")
def toy_checkpoint(tmp_path_factory):
    run = tmp_path_factory.mktemp("toy")
    _fit(run, 4)
    return run / "checkpoints" / "step-00000002", load_file(run / "checkpoints" / "step-00000004" / "model.safetensors")


def test_checkpoint_holds_only_json_and_safetensors(toy_checkpoint):
    ckpt, _ = toy_checkpoint
    names = sorted(p.name for p in ckpt.iterdir())
    assert all(n.endswith((".json", ".safetensors")) or n == MARKER for n in names), names
    for stem in ("model", "optimizer_0", "rng_state_rank0"):
        assert (ckpt / f"{stem}.safetensors").is_file(), stem
    assert (ckpt / "scheduler_0.json").is_file() and json.loads((ckpt / STATE_FILE).read_text())["format"]


def test_resume_is_exact_and_ignores_planted_pickles(toy_checkpoint, tmp_path):
    ckpt, want = toy_checkpoint
    run = tmp_path / "run"
    shutil.copytree(ckpt.parent.parent, run)
    shutil.rmtree(run / "checkpoints" / "step-00000004")
    marker = tmp_path / "payload-ran"
    # accelerate's old pickle names, planted next to the real state: never opened
    for name in ("custom_checkpoint_0.pkl", "random_states_0.pkl", "optimizer.bin", "scheduler.bin"):
        with (run / "checkpoints" / "step-00000002" / name).open("wb") as fh:
            pickle.dump(_Payload(marker), fh)
    result = _fit(run, 4, resume="auto")
    assert result.step == 4 and not marker.exists()
    got = load_file(run / "checkpoints" / "step-00000004" / "model.safetensors")
    for name, tensor in want.items():
        assert torch.equal(got[name], tensor), name  # bit-identical to the uninterrupted run


@pytest.mark.parametrize("kind", ["pickle", "torch.save"])
def test_payload_in_each_tensor_file_never_runs(toy_checkpoint, tmp_path, kind):
    ckpt, _ = toy_checkpoint
    victims = sorted(p.name for p in ckpt.iterdir() if not p.name.endswith(".json") and p.name != MARKER)
    assert len(victims) >= 3
    for victim in victims:
        run = tmp_path / victim
        shutil.copytree(ckpt.parent.parent, run)
        target = run / "checkpoints" / "step-00000002" / victim
        shutil.rmtree(run / "checkpoints" / "step-00000004")
        marker = tmp_path / f"ran-{victim}"
        if kind == "pickle":
            target.write_bytes(pickle.dumps(_Payload(marker)))
        else:
            torch.save({"state": _Payload(marker)}, target)
        with pytest.raises(ValueError, match=re.escape(victim)):
            _fit(run, 4, resume="auto")
        assert not marker.exists(), victim


def test_old_pickled_layout_is_refused(tmp_path):
    ckpt = _make(tmp_path / "checkpoints", "step-00000001")
    (ckpt / "custom_checkpoint_0.pkl").write_bytes(pickle.dumps(_Payload(tmp_path / "ran")))
    with pytest.raises(ValueError, match="never unpickles"):
        _fit(tmp_path, 2, resume=str(ckpt))
    assert not (tmp_path / "ran").exists()


def test_state_codec_round_trip(tmp_path):
    from echocare.engine.state_io import (
        capture_rng,
        load_state,
        restore_rng,
        save_state,
    )

    state = {"state": {0: {"step": torch.tensor(3.0), "m": torch.randn(2, 3)}}, "groups": [{"betas": (0.9, 0.99),
             "lr": 1e-3, "eps": float("inf"), "name": None, "params": [0]}]}
    save_state(state, tmp_path / "s")
    json.loads((tmp_path / "s.json").read_text(), parse_constant=lambda c: pytest.fail(f"non-strict JSON {c}"))
    back = load_state(tmp_path / "s")
    assert back["groups"] == state["groups"] and isinstance(back["groups"][0]["betas"], tuple)
    assert torch.equal(back["state"][0]["m"], state["state"][0]["m"]) and list(back["state"]) == [0]
    save_state(capture_rng(), tmp_path / "rng")
    a = (random.random(), np.random.rand(), torch.rand(1))
    restore_rng(load_state(tmp_path / "rng"))
    assert (random.random(), np.random.rand(), torch.rand(1)) == a
    with pytest.raises(TypeError, match="s.x"):
        save_state({"x": object()}, tmp_path / "s")
    from echocare.engine.state_io import CheckpointError

    for bad in ({"__ndarray__": [1], "dtype": "O"}, {"__ndarray__": [1], "dtype": "no-such-type"},
                {"__ndarray__": ["x"], "dtype": "uint32"}):  # a handed-over checkpoint's JSON is untrusted
        (tmp_path / "bad.json").write_text(json.dumps({"a": bad}))
        with pytest.raises(CheckpointError, match="malformed array"):
            load_state(tmp_path / "bad")


def test_deepspeed_engine_state_loads_weights_only(tmp_path):
    """DeepSpeed's own shards are torch pickles: only tensors and the allow-listed DeepSpeed types load."""
    pytest.importorskip("deepspeed")
    from deepspeed.runtime.zero.config import ZeroStageEnum
    from deepspeed.utils.tensor_fragment import fragment_address

    from echocare.engine.checkpoint import _WeightsOnlyCheckpointEngine

    engine = _WeightsOnlyCheckpointEngine(None)
    good = tmp_path / "optim_states.pt"
    torch.save({"zero_stage": ZeroStageEnum.gradients, "map": {"w": fragment_address(numel=4, start=0)},
                "state": torch.ones(3)}, good)
    got = engine.load(str(good), map_location="cpu")
    assert got["zero_stage"] == ZeroStageEnum.gradients and got["map"]["w"].numel == 4
    marker = tmp_path / "ran"
    bad = tmp_path / "mp_rank_00_model_states.pt"
    torch.save({"module": {"w": torch.ones(2)}, "extra": _Payload(marker)}, bad)
    with pytest.raises(ValueError, match="weights_only=True"):
        engine.load(str(bad), map_location="cpu")
    assert not marker.exists()
