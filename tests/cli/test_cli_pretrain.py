"""`echocare pretrain` end to end on phantom shards: single process, SIGKILL + resume, DDP, DeepSpeed."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import echocare
from echocare.cli import main
from echocare.config.recipes import find_recipe
from echocare.engine.checkpoint import MARKER, CheckpointManager

REQUIRED = ("step", "loss", "loss_mim", "loss_hie", "lr", "img_per_s", "world_size")
DEBUG = str(find_recipe("pretrain/debug.yaml"))
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    from echocare.data.phantom import write_phantom_shards

    out = tmp_path_factory.mktemp("phantom")
    write_phantom_shards(out, 64, seed=0, image_size=64, shard_max_count=16)  # 4 shards
    return out


@pytest.fixture(autouse=True)
def _fresh_accelerate_state():
    from accelerate.state import AcceleratorState, GradientState

    yield
    AcceleratorState._reset_state(True)
    GradientState._reset_state()


def _args(shards, out, *extra):
    sets = [f"data.shards={shards}", "train.batch_size=4", "train.log_every=1", "train.progress=false",
            "train.tensorboard=false", "train.image_every=0", *extra]
    argv = ["pretrain", "--config", DEBUG, "--output-dir", str(out)]
    for s in sets:
        argv += ["--set", s]
    return argv


def _records(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def _env(**extra):
    env = dict(os.environ, **{"OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", **extra})
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    return env


def test_debug_pretrain_run(shards, tmp_path):
    run = tmp_path / "run"
    assert main(_args(shards, run, "train.max_steps=6", "train.ckpt_every=3", "train.image_every=6")) == 0
    recs = _records(run)
    assert [r["step"] for r in recs] == [1, 2, 3, 4, 5, 6]
    for r in recs:
        for key in REQUIRED:
            assert key in r, key
        assert r["world_size"] == 1 and r["loss_hie"] > 0 and r["loss_mim"] > 0
    assert (run / "config.yaml").is_file() and (run / "recon_latest.png").is_file()
    assert (run / "loss_curve.png").is_file()
    assert [s for s, _ in CheckpointManager(run / "checkpoints").checkpoints()] == [3, 6]


def test_bad_override_exit_code(shards, tmp_path, capsys):
    assert main(_args(shards, tmp_path, "train.max_stpes=3")) == 2
    assert "did you mean 'train.max_steps'" in capsys.readouterr().err


@pytest.mark.slow
def test_sigkill_during_checkpoint_write_then_resume_matches(shards, tmp_path):
    common = ("train.max_steps=9", "train.ckpt_every=3", "train.keep_last=5")
    ref = tmp_path / "ref"
    assert main(_args(shards, ref, *common)) == 0
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(True)
    GradientState._reset_state()

    run = tmp_path / "killed"
    # The process hangs while writing checkpoint 9 (after steps 7-8 ran past checkpoint 6); SIGKILL it.
    # same thread count as this process: float reductions must match the reference run
    env = _env(ECHOCARE_CKPT_FAULT="hang:9", OMP_NUM_THREADS=str(torch.get_num_threads()))
    log = (tmp_path / "killed.log").open("w")  # a file, not a pipe: a full pipe would block the child
    proc = subprocess.Popen([sys.executable, "-m", "echocare", *_args(shards, run, *common)], env=env,
                            stdout=log, stderr=subprocess.STDOUT)
    tmp_ckpt = run / "checkpoints" / "tmp-step-00000009"
    deadline = time.time() + 240
    try:
        while not (tmp_ckpt / "loader_state_rank0.json").is_file():
            assert proc.poll() is None, (tmp_path / "killed.log").read_text()[-3000:]
            assert time.time() < deadline, "the run never reached the checkpoint write of step 9"
            time.sleep(0.5)
        time.sleep(1.0)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        log.close()
    assert proc.returncode == -signal.SIGKILL
    assert max(r["step"] for r in _records(run)) == 9  # steps after the last checkpoint were logged
    assert tmp_ckpt.is_dir() and not (tmp_ckpt / MARKER).exists()
    assert CheckpointManager(run / "checkpoints").latest().name == "step-00000006"

    assert main(_args(shards, run, *common) + ["--resume", "auto"]) == 0
    assert not tmp_ckpt.exists()
    steps = [r["step"] for r in _records(run)]
    assert steps == list(range(1, 10))
    ref_loss = [r["loss"] for r in _records(ref)]
    assert [r["loss"] for r in _records(run)] == pytest.approx(ref_loss, abs=1e-5)
    want = load_file(ref / "checkpoints" / "step-00000009" / "model.safetensors")
    got = load_file(run / "checkpoints" / "step-00000009" / "model.safetensors")
    assert want.keys() == got.keys()
    for name in want:
        torch.testing.assert_close(got[name], want[name], atol=1e-5, rtol=0, msg=name)


def _launch(shards, out, launcher_args, extra_env=None, steps=3, resume=()):
    cmd = [sys.executable, "-m", "accelerate.commands.launch", *launcher_args, "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "--main_process_port", "0", "-m", "echocare",
           *_args(shards, out, f"train.max_steps={steps}", "train.ckpt_every=2", "train.image_every=3"), *resume]
    proc = subprocess.run(cmd, env=_env(**(extra_env or {})), capture_output=True, text=True, timeout=420)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return _records(out)


@pytest.mark.slow
def test_ddp_two_processes(shards, tmp_path):
    recs = _launch(shards, tmp_path, ["--multi_gpu"])
    assert [r["step"] for r in recs] == [1, 2, 3]
    assert all(r["world_size"] == 2 for r in recs)
    assert recs[-1]["samples"] == 3 * 4 * 2
    ckpt = tmp_path / "checkpoints" / "step-00000003"
    for name in ("rng_state_rank0.json", "rng_state_rank1.json", "optimizer_0.json", "loader_state_rank0.json",
                 "loader_state_rank1.json", "model.safetensors", MARKER):
        assert (ckpt / name).is_file(), name


@pytest.mark.slow
def test_deepspeed_zero2_two_processes(shards, tmp_path):
    pytest.importorskip("deepspeed")
    recs = _launch(shards, tmp_path, ["--use_deepspeed", "--zero_stage", "2"], {"DS_ACCELERATOR": "cpu"})
    assert [r["step"] for r in recs] == [1, 2, 3]
    assert all(r["world_size"] == 2 and r["loss"] == r["loss"] for r in recs)
    weights = load_file(tmp_path / "checkpoints" / "step-00000003" / "model.safetensors")
    assert weights and all(t.dtype == torch.float32 for t in weights.values())  # consolidated fp32 masters
    # the DeepSpeed run directory exports like any other, and the export loads as a backbone
    from echocare.jobs.export import export_encoder

    enc = export_encoder(tmp_path, tmp_path / "encoder.safetensors")
    # resume from the step-2 DeepSpeed checkpoint: its engine pickles load with weights_only=True,
    # and a planted accelerate-style pickle is never opened
    ckpt2 = tmp_path / "checkpoints" / "step-00000002"
    marker = tmp_path / "payload-ran"
    (ckpt2 / "custom_checkpoint_0.pkl").write_bytes(
        b"cbuiltins\nexec\n(V" + f"open({str(marker)!r}, 'w').write('x')".encode() + b"\ntR.")
    shutil.rmtree(tmp_path / "checkpoints" / "step-00000003")
    recs = _launch(shards, tmp_path, ["--use_deepspeed", "--zero_stage", "2"], {"DS_ACCELERATOR": "cpu"},
                   steps=3, resume=["--resume", "auto"])  # same config: the resume check passes
    assert [r["step"] for r in recs] == [1, 2, 3] and not marker.exists()
    assert [s for s, _ in CheckpointManager(tmp_path / "checkpoints").checkpoints()][-1] == 3
    backbone = echocare.load_backbone(enc)
    stem = "encoder.patch_embed.proj.weight"
    torch.testing.assert_close(backbone.patch_embed.proj.weight, weights[next(k for k in weights if k.endswith(stem))])


def test_quickstart_tiny(tmp_path, capsys):
    out = tmp_path / "qs"
    argv = ["quickstart", "--output-dir", str(out), "--steps", "3", "--images", "16",
            "--set", "train.batch_size=4", "--set", "train.progress=false", "--set", "train.tensorboard=false"]
    assert main(argv) == 0
    text = capsys.readouterr().out
    for name in ("recon_latest.png", "loss_curve.png", "encoder.safetensors"):
        assert name in text
        assert next(out.rglob(name)).is_file()
    import echocare

    backbone = echocare.load_backbone(out / "encoder.safetensors")
    feats = backbone.forward_intermediates(torch.rand(1, 1, 64, 64), intermediates_only=True)
    assert feats[0].shape[:2] == (1, 24)


def test_small_recipe_runs_as_documented(shards, tmp_path):
    run = tmp_path / "small"
    argv = ["pretrain", "--config", str(find_recipe("pretrain/small.yaml")), "--output-dir", str(run)]
    for s in (f"data.shards={shards}", "train.max_steps=2", "train.batch_size=4", "data.num_workers=0",
              "train.progress=false", "train.tensorboard=false", "train.image_every=0"):
        argv += ["--set", s]
    assert main(argv) == 0
    assert main(["export", str(run), "--out", str(run / "encoder.safetensors")]) == 0
    backbone = echocare.load_backbone(run / "encoder.safetensors")
    assert backbone.embed_dim == 32 and backbone._depths == [2, 2, 2, 2]  # echocare_swin_nano
    assert [r["step"] for r in _records(run)][-1] == 2
