"""Trainer guards: a non-finite gradient norm skips the step, non-finite weights are never checkpointed,
a fresh start sets an earlier attempt's metrics.jsonl aside, and the stop signal is reported."""

from __future__ import annotations

import json
import math
import os
import signal

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from echocare.config import OptimConfig, TrainConfig
from echocare.engine import CheckpointManager, NonFiniteLossError, NonFiniteWeightsError, Trainer


@pytest.fixture(autouse=True)
def _fresh_accelerate_state():
    from accelerate.state import AcceleratorState, GradientState

    yield
    AcceleratorState._reset_state(True)
    GradientState._reset_state()


def _stream(n: int = 1000):
    for i in range(n):
        g = torch.Generator().manual_seed(i)
        x = torch.randn(4, 8, generator=g)
        yield {"image": x, "y": x.sum(1, keepdim=True)}


class Stream:
    def __iter__(self):
        return _stream()


class Toy(nn.Module):
    """Regression; ``hook(calls, module)`` may return an extra loss term (or raise) at a given forward call."""

    def __init__(self, hook=None) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 1))
        self.spare = nn.Parameter(torch.ones(3))  # takes no part in the loss
        self.hook, self.calls = hook, 0

    def forward(self, batch):
        self.calls += 1
        loss = (self.net(batch["image"]) - batch["y"]).pow(2).mean()
        if self.hook is not None:
            extra = self.hook(self.calls, self)
            if extra is not None:
                loss = loss + extra
        return {"loss": loss, "logs": {}}


def _cfg(**train):
    base = dict(max_steps=6, batch_size=4, ckpt_every=100, log_every=1, image_every=0, progress=False,
                precision="fp32", keep_last=3, tensorboard=False)
    base.update(train)
    return TrainConfig(**base), OptimConfig(lr=1e-2, lr_ref_batch=4, warmup_steps=1, clip_grad=0.0)


def _records(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def _nan_gradient(at):
    """A finite loss (0) whose gradient is NaN: d sqrt(u)/du at u = 0 is inf, times du/dw = 0 gives NaN."""
    def hook(calls, module):
        if calls in at:
            w = module.net[0].weight
            return torch.sqrt((w - w.detach()).pow(2).sum())
        return None
    return hook


def test_nonfinite_gradient_norm_is_skipped_and_counted(tmp_path):
    tc, oc = _cfg()
    task = Toy(_nan_gradient({2, 3}))
    result = Trainer(tc, oc, tmp_path).fit(task, Stream())
    assert result.step == 6 and result.nonfinite_skipped == 2 and task.calls == 8
    recs = _records(tmp_path)
    assert [r["step"] for r in recs] == [1, 2, 3, 4, 5, 6]
    assert all(math.isfinite(r["loss"]) and math.isfinite(r["grad_norm"]) for r in recs)
    assert recs[-1]["nonfinite_skipped"] == 2
    weights = load_file(tmp_path / "checkpoints" / "step-00000006" / "model.safetensors")
    assert all(torch.isfinite(t).all() for t in weights.values())


def test_nonfinite_gradient_norm_aborts_after_n_in_a_row(tmp_path):
    tc, oc = _cfg(max_steps=50, max_nonfinite=3)
    task = Toy(_nan_gradient(set(range(4, 100))))
    with pytest.raises(NonFiniteLossError, match="3 consecutive .* gradient norm"):
        Trainer(tc, oc, tmp_path).fit(task, Stream())
    assert task.calls == 3 + 3


@pytest.mark.parametrize("value", [float("inf"), 1e38])
def test_nonfinite_weights_are_never_checkpointed(tmp_path, value):
    """A weight at inf, or at 1e38 that overflows to inf when scaled by 10, stops the run at the next save."""
    def hook(calls, module):
        if calls == 3:
            with torch.no_grad():
                module.spare.fill_(value).mul_(10.0)  # 1e38 * 10 overflows float32
        return None

    tc, oc = _cfg(ckpt_every=2)
    with pytest.raises(NonFiniteWeightsError, match=r"checkpoint step 4: 1 tensor\(s\) .*spare"):
        Trainer(tc, oc, tmp_path).fit(Toy(hook), Stream())
    assert [s for s, _ in CheckpointManager(tmp_path / "checkpoints").checkpoints()] == [2]


def test_fresh_start_sets_an_earlier_attempts_metrics_aside(tmp_path):
    """A crash before the first checkpoint, then --resume auto: every step appears once in metrics.jsonl."""
    def crash(calls, module):
        if calls == 5:
            raise RuntimeError("simulated crash")
        return None

    tc, oc = _cfg(max_steps=8, ckpt_every=100)
    with pytest.raises(RuntimeError, match="simulated crash"):
        Trainer(tc, oc, tmp_path).fit(Toy(crash), Stream())
    assert [r["step"] for r in _records(tmp_path)] == [1, 2, 3, 4]
    result = Trainer(tc, oc, tmp_path).fit(Toy(), Stream(), resume="auto")  # no checkpoint: a fresh start
    assert result.step == 8
    assert [r["step"] for r in _records(tmp_path)] == list(range(1, 9))
    old = tmp_path / "metrics.jsonl.1"
    assert [json.loads(line)["step"] for line in old.read_text().splitlines()] == [1, 2, 3, 4]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_stop_signal_is_reported(tmp_path, sig):
    def send(calls, module):
        if calls == 2:
            os.kill(os.getpid(), sig)
        return None

    tc, oc = _cfg(max_steps=100)
    result = Trainer(tc, oc, tmp_path).fit(Toy(send), Stream())
    assert result.interrupted and result.stop_signal == sig and result.step == 2
    assert CheckpointManager(tmp_path / "checkpoints").latest().name == "step-00000002"
