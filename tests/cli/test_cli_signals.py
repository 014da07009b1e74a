"""SIGTERM / SIGINT to the whole process group (what schedulers, `docker stop` and terminals send), with
DataLoader workers: the run checkpoints after the current step and exits 143 / 130 without a traceback,
`--resume auto` finishes it with every step logged once; a second signal exits at once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from echocare.config.recipes import find_recipe
from echocare.engine.checkpoint import CheckpointManager

REPO = Path(__file__).resolve().parents[2]
COMMON = ["--set", "train.progress=false", "--set", "train.tensorboard=false", "--set", "train.image_every=0",
          "--set", "train.batch_size=4", "--set", "train.log_every=1", "--set", "train.ckpt_every=1000",
          "--set", "data.num_workers=1", "--set", "train.precision=fp32"]


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    from echocare.data.phantom import write_phantom_shards

    out = tmp_path_factory.mktemp("phantom")
    write_phantom_shards(out, 32, seed=0, image_size=64, shard_max_count=16)
    return out


@pytest.fixture(scope="module")
def cls_root(tmp_path_factory):
    from echocare.data.labeled.examples import make_example_dataset

    root = tmp_path_factory.mktemp("cls")
    make_example_dataset("classification", root, patients=3, frames=2, size=64)
    return root


def _pretrain(shards, run, steps):
    return ["pretrain", "--config", str(find_recipe("pretrain/debug.yaml")), "--output-dir", str(run),
            "--set", f"data.shards={shards}", "--set", f"train.max_steps={steps}", *COMMON]


def _finetune(root, run, steps):
    return ["finetune", "--config", "recipes/finetune/classification.yaml", "--output-dir", str(run),
            "--set", f"data.root={root}", "--set", "model.name=echocare_swin_debug", "--set", "model.img_size=64",
            "--set", "data.val_fraction=0.34", "--set", r"data.group_regex=(patient\d+)",
            "--set", f"train.max_steps={steps}", "--set", "eval.n_bootstrap=10", *COMMON]


def _steps(run):
    """Steps of the training lines of metrics.jsonl (validation lines, ``val/...``, carry a step too)."""
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [r["step"] for r in lines if "loss" in r]


def _start(argv, log):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    # its own session = its own process group, like a job under a scheduler; workers join that group
    return subprocess.Popen([sys.executable, "-m", "echocare", *argv], cwd=REPO, env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)


def _signal_after(argv, run, tmp_path, sig, lines=2, twice=False):
    """Start the CLI, signal its process group once ``lines`` metrics lines exist; (exit code, log text)."""
    log_path = tmp_path / f"{run.name}.log"
    with log_path.open("w") as log:
        proc = _start(argv, log)
        try:
            deadline = time.time() + 240
            metrics = run / "metrics.jsonl"
            while not (metrics.is_file() and len(metrics.read_text().splitlines()) >= lines):
                assert proc.poll() is None, log_path.read_text()[-3000:]
                assert time.time() < deadline, "the run never started training"
                time.sleep(0.1)
            # signal while a DataLoader worker is alive (it is in the group too); the fine-tuning loader
            # restarts its workers at every epoch, so wait for one rather than catch a gap between epochs
            while not _children(proc.pid):
                assert proc.poll() is None, log_path.read_text()[-3000:]
                assert time.time() < deadline, "no DataLoader worker appeared"
                time.sleep(0.02)
            os.killpg(proc.pid, sig)
            if twice:
                time.sleep(0.05)
                os.killpg(proc.pid, sig)
            code = proc.wait(120)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(30)
    return code, log_path.read_text()


def _children(pid):
    try:
        return Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return ["?"]  # no /proc: do not assert on it


def _resume(argv, tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, "-m", "echocare", *argv, "--resume", "auto"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=400)


@pytest.mark.slow
def test_pretrain_sigterm_to_the_group_checkpoints_exits_143_and_resumes(shards, tmp_path):
    run = tmp_path / "pre"
    argv = _pretrain(shards, run, 40)
    code, log = _signal_after(argv, run, tmp_path, signal.SIGTERM)
    assert code == 143, log[-3000:]
    assert "Traceback" not in log and "killed by signal" not in log
    stopped = int(CheckpointManager(run / "checkpoints").latest().name.split("-")[1])
    assert stopped == _steps(run)[-1] < 40
    proc = _resume(argv, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert _steps(run) == list(range(1, 41))  # every step once
    assert json.loads((run / "summary.json").read_text())["step"] == 40


@pytest.mark.slow
def test_finetune_sigint_to_the_group_checkpoints_exits_130_and_resumes(cls_root, tmp_path):
    run = tmp_path / "ft"
    argv = _finetune(cls_root, run, 40)
    code, log = _signal_after(argv, run, tmp_path, signal.SIGINT)
    assert code == 130, log[-3000:]
    assert "Traceback" not in log and "KeyboardInterrupt" not in log
    stopped = int(CheckpointManager(run / "checkpoints").latest().name.split("-")[1])
    assert stopped == _steps(run)[-1] < 40 and not (run / "metrics.json").exists()
    proc = _resume(argv, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert _steps(run) == list(range(1, 41))  # every step once
    assert json.loads((run / "metrics.json").read_text())["step"] == 40


@pytest.mark.slow
def test_second_sigterm_exits_at_once_without_traceback(shards, tmp_path):
    run = tmp_path / "twice"
    code, log = _signal_after(_pretrain(shards, run, 40), run, tmp_path, signal.SIGTERM, twice=True)
    assert code == 143, log[-3000:]
    assert "Traceback" not in log and "exiting now without a checkpoint" in log
