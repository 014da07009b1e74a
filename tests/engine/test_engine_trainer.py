"""Trainer on toy tasks in-process: logging, accumulation, non-finite guard, checkpoints, resume."""

from __future__ import annotations

import json
import math
import os
import shutil
import signal

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from echocare.config import OptimConfig, TrainConfig, load_config
from echocare.engine import CheckpointManager, NonFiniteLossError, Trainer
from echocare.engine.trainer import FitResult


@pytest.fixture(autouse=True)
def _fresh_accelerate_state():
    """accelerate keeps process-wide singletons; reset them around each in-process run."""
    from accelerate.state import AcceleratorState, GradientState

    yield
    AcceleratorState._reset_state(True)
    GradientState._reset_state()


class Stream:
    """Deterministic toy batches with an exact, JSON-able position."""

    def __init__(self, n_batches: int = 7, batch: int = 4) -> None:
        self.n, self.batch, self.pos = n_batches, batch, 0

    def __iter__(self):
        while self.pos < self.n:
            g = torch.Generator().manual_seed(1000 + self.pos)
            x = torch.randn(self.batch, 8, generator=g)
            self.pos += 1
            yield {"image": x, "y": x.sum(1, keepdim=True), "key": [f"k{self.pos}"] * self.batch}
        self.pos = 0

    def state_dict(self):
        return {"pos": self.pos}

    def load_state_dict(self, state):
        self.pos = int(state["pos"])


class Toy(nn.Module):
    """Regression task with dropout (so RNG state matters for exact resume)."""

    def __init__(self, nan_at: set[int] | None = None) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(8, 16), nn.LayerNorm(16), nn.Dropout(0.2), nn.Linear(16, 1))
        self.nan_at = nan_at or set()
        self.calls = 0

    def forward(self, batch):
        self.calls += 1
        loss = (self.net(batch["image"]) - batch["y"]).pow(2).mean()
        if self.calls in self.nan_at:
            loss = loss * float("nan")
        return {"loss": loss, "logs": {"mse": loss.detach(), "aux": 1.0}}

    def visualize(self, batch):
        return {"input": batch["image"][:2].reshape(2, 1, 2, 4).sigmoid()}


def _cfg(**train):
    base = dict(max_steps=10, batch_size=4, ckpt_every=4, log_every=2, image_every=5, progress=False,
                precision="fp32", keep_last=2, tensorboard=False)
    base.update(train)
    return TrainConfig(**base), OptimConfig(lr=1e-2, lr_ref_batch=4, warmup_steps=2)


def _records(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_fit_logs_checkpoints_and_figures(tmp_path):
    tc, oc = _cfg()
    result = Trainer(tc, oc, tmp_path).fit(Toy(), Stream())
    assert isinstance(result, FitResult) and result.step == 10 and not result.interrupted
    recs = _records(tmp_path)
    assert [r["step"] for r in recs] == [2, 4, 6, 8, 10]
    for r in recs:
        for key in ("step", "loss", "mse", "aux", "lr", "img_per_s", "world_size", "grad_norm"):
            assert key in r, key
        assert r["world_size"] == 1 and r["img_per_s"] > 0
    assert recs[-1]["loss"] < recs[0]["loss"]
    assert recs[0]["lr"] == pytest.approx(1e-2 * 2 / 3)  # warmup step index 1 of 2
    # epochs wrap around (7 batches per pass) and are counted
    assert recs[-1]["epoch"] == 1 and recs[-1]["samples"] == 40
    ckpts = [p.name for _, p in CheckpointManager(tmp_path / "checkpoints").checkpoints()]
    assert ckpts == ["step-00000008", "step-00000010"]  # keep_last=2 rotated step 4 away
    assert (tmp_path / "loss_curve.png").stat().st_size > 1000
    assert (tmp_path / "images" / "recon_step-00000005.png").is_file()
    assert (tmp_path / "recon_latest.png").is_file()


def test_config_and_derived_written(tmp_path):
    from echocare.config import PretrainConfig

    cfg = load_config(PretrainConfig, overrides=["data.shards=x", "train.batch_size=4", "train.max_steps=1",
                                                 "train.progress=false", "train.tensorboard=false",
                                                 "train.precision=fp32", "train.image_every=0"])
    trainer = Trainer(cfg.train, cfg.optim, tmp_path, config=cfg)
    assert not (tmp_path / "config.yaml").exists()  # written by fit, once the resume check has passed
    trainer.fit(Toy(), Stream())
    text = (tmp_path / "config.yaml").read_text()
    assert "batch_size: 4" in text and "# effective_batch: 4" in text
    assert "# peak_lr: 1.5625e-06" in text  # 1e-4 * 4 / 256


def test_resume_matches_uninterrupted(tmp_path):
    tc, oc = _cfg(max_steps=10, ckpt_every=3, keep_last=5)
    full = tmp_path / "full"
    Trainer(tc, oc, full).fit(Toy(), Stream())
    ref = load_file(full / "checkpoints" / "step-00000010" / "model.safetensors")

    part = tmp_path / "part"
    Trainer(*_cfg(max_steps=10, ckpt_every=3, keep_last=5), part).fit(Toy(), Stream())
    # pretend the process died after step 8: drop later checkpoints, keep its metrics lines
    for step in (9, 10):
        shutil.rmtree(part / "checkpoints" / f"step-{step:08d}")
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(True)
    GradientState._reset_state()
    model = Toy()
    with torch.no_grad():  # different starting weights: the checkpoint must overwrite them
        for p in model.parameters():
            p.add_(1.0)
    result = Trainer(tc, oc, part).fit(model, Stream(), resume="auto")
    assert result.step == 10
    got = load_file(part / "checkpoints" / "step-00000010" / "model.safetensors")
    for name, tensor in ref.items():
        torch.testing.assert_close(got[name], tensor, atol=1e-6, rtol=0)
    steps = [r["step"] for r in _records(part)]
    assert steps == sorted(steps) and steps.count(8) == 1  # lines after step 6 were replaced


def test_gradient_accumulation_counts_optimizer_steps(tmp_path):
    tc, oc = _cfg(max_steps=4, grad_accum=3, log_every=4, image_every=0)
    task = Toy()
    result = Trainer(tc, oc, tmp_path).fit(task, Stream(n_batches=100))
    assert result.step == 4 and task.calls == 12
    assert _records(tmp_path)[-1]["samples"] == 48


def test_nonfinite_loss_is_skipped_and_counted(tmp_path):
    tc, oc = _cfg(max_steps=6, log_every=6, image_every=0)
    task = Toy(nan_at={2, 3})
    result = Trainer(tc, oc, tmp_path).fit(task, Stream(n_batches=100))
    assert result.step == 6 and result.nonfinite_skipped == 2
    rec = _records(tmp_path)[-1]
    assert rec["nonfinite_skipped"] == 2 and math.isfinite(rec["loss"])
    weights = load_file(tmp_path / "checkpoints" / "step-00000006" / "model.safetensors")
    assert all(torch.isfinite(t).all() for t in weights.values())


def test_nonfinite_loss_aborts_after_n_in_a_row(tmp_path):
    tc, oc = _cfg(max_steps=50, max_nonfinite=3, image_every=0)
    task = Toy(nan_at=set(range(5, 100)))
    with pytest.raises(NonFiniteLossError, match="3 consecutive optimizer steps had a non-finite loss"):
        Trainer(tc, oc, tmp_path).fit(task, Stream(n_batches=100))
    assert task.calls == 4 + 3


def test_sigterm_checkpoints_and_stops(tmp_path):
    tc, oc = _cfg(max_steps=100, ckpt_every=1000, image_every=0)

    class Signaller(Toy):
        def forward(self, batch):
            if self.calls == 3:
                os.kill(os.getpid(), signal.SIGTERM)
            return super().forward(batch)

    result = Trainer(tc, oc, tmp_path).fit(Signaller(), Stream(n_batches=100))
    assert result.interrupted and result.step == 4
    assert CheckpointManager(tmp_path / "checkpoints").latest().name == "step-00000004"


def test_grad_checkpointing_requires_support(tmp_path):
    tc, oc = _cfg(grad_checkpointing=True)
    with pytest.raises(ValueError, match="set_grad_checkpointing"):
        Trainer(tc, oc, tmp_path).fit(Toy(), Stream())


def test_periodic_validation_logs_and_keeps_best_weights_across_resume(tmp_path):
    """evaluate(task) every 3 steps: val/* lines, best (lower) value tracked, best.safetensors = that step."""
    scores = iter([5.0, 2.0, 3.0, 4.0, 1.5])  # steps 3, 6, 9 | resumed: 9 (redone), 10

    def evaluate(task):
        assert not task.training
        return {"err": next(scores), "other": 1.0}

    snapshots = {}

    def remember(task):
        out = evaluate(task)
        snapshots[out["err"]] = {k: v.clone() for k, v in task.state_dict().items()}
        return out

    tc, oc = _cfg(max_steps=9, ckpt_every=3, keep_last=5, image_every=0)
    res = Trainer(tc, oc, tmp_path).fit(Toy(), Stream(), evaluate=remember, eval_every=3, select_metric="err",
                                        lower_is_better=True)
    assert (res.best_step, res.best_value) == (6, 2.0)
    assert {k: v for k, v in load_file(res.best_weights).items()}.keys() == snapshots[2.0].keys()
    assert all(torch.equal(load_file(res.best_weights)[k], v) for k, v in snapshots[2.0].items())
    vals = [r for r in _records(tmp_path) if "val/err" in r]
    assert [(r["step"], r["val/err"]) for r in vals] == [(3, 5.0), (6, 2.0), (9, 3.0)]
    # resume from step 6 with a longer budget: the best value of the checkpoint (2.0) is what 4.0 is compared to
    state = json.loads((tmp_path / "checkpoints" / "step-00000006" / "trainer_state.json").read_text())
    assert state["best_value"] == 2.0 and state["best_step"] == 6
    tc2, _ = _cfg(max_steps=10, ckpt_every=3, keep_last=5, image_every=0)
    shutil.rmtree(tmp_path / "checkpoints" / "step-00000009")
    res2 = Trainer(tc2, oc, tmp_path).fit(Toy(), Stream(), resume="auto", evaluate=remember, eval_every=3,
                                          select_metric="err", lower_is_better=True)
    assert (res2.best_step, res2.best_value) == (10, 1.5)
    with pytest.raises(KeyError, match="selection metric 'nope'"):
        Trainer(_cfg(max_steps=3)[0], oc, tmp_path / "bad").fit(Toy(), Stream(), evaluate=lambda t: {"err": 1.0},
                                                                 eval_every=3, select_metric="nope")


def test_resume_with_changed_config_fails_naming_keys(tmp_path):
    from echocare.config import PretrainConfig
    from echocare.engine import ConfigChangedError

    fast = ["data.shards=x", "train.batch_size=4", "train.max_steps=2", "train.progress=false",
            "train.tensorboard=false", "train.precision=fp32", "train.image_every=0", "train.ckpt_every=2"]

    def run(*extra, resume="auto"):
        cfg = load_config(PretrainConfig, overrides=[*fast, *extra])
        return Trainer(cfg.train, cfg.optim, tmp_path, config=cfg).fit(Toy(), Stream(), resume=resume)

    run()
    state = json.loads((tmp_path / "checkpoints" / "step-00000002" / "trainer_state.json").read_text())
    assert len(state["config_hash"]) == 64 and state["config"]["optim.lr"] == 1e-4
    assert "train.log_every" not in state["config"]  # resume-safe keys are not part of the hash
    run("train.log_every=1", "train.keep_last=2")  # resume-safe: fine
    with pytest.raises(ConfigChangedError, match=r"optim\.lr: 0\.0001 -> 0\.001.*allow_config_change"):
        run("optim.lr=1e-3", "train.max_steps=3")
    assert "max_steps: 2" in (tmp_path / "config.yaml").read_text()  # the rejected config was not written
    assert run("optim.lr=1e-3", "train.max_steps=3", "train.allow_config_change=true").step == 3


def test_resume_after_an_upgrade_accepts_new_settings_at_their_defaults(tmp_path, caplog):
    from echocare.config import PretrainConfig
    from echocare.engine import ConfigChangedError

    fast = ["data.shards=x", "train.batch_size=4", "train.max_steps=2", "train.progress=false",
            "train.tensorboard=false", "train.precision=fp32", "train.image_every=0", "train.ckpt_every=2"]

    def run(*extra):
        cfg = load_config(PretrainConfig, overrides=[*fast, *extra])
        return Trainer(cfg.train, cfg.optim, tmp_path, config=cfg).fit(Toy(), Stream(), resume="auto")

    run()
    # the checkpoint of an echocare that did not have model.hie_min_labels yet
    state_file = tmp_path / "checkpoints" / "step-00000002" / "trainer_state.json"
    state = json.loads(state_file.read_text())
    del state["config"]["model.hie_min_labels"]
    state["config_hash"] = "older"
    state_file.write_text(json.dumps(state))
    with pytest.raises(ConfigChangedError, match=r"model\.hie_min_labels: None -> 1"):
        run("model.hie_min_labels=1", "train.max_steps=3")  # set to a non-default: a change
    with pytest.raises(ConfigChangedError, match=r"optim\.lr"):  # other changes are still changes
        run("optim.lr=1e-3", "train.max_steps=3")
    with caplog.at_level("WARNING"):
        assert run("train.max_steps=2").step == 2  # at its default: resumes (nothing left to do at step 2)
    assert "predates setting(s) model.hie_min_labels" in caplog.text
