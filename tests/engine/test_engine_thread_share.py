"""Cores shared among echocare trainings on one machine: a real second process registers, threads follow."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

import pytest
import torch
from torch import nn

from echocare.config import OptimConfig, TrainConfig
from echocare.engine import Trainer
from echocare.engine import thread_share
from echocare.engine.thread_share import ThreadShare, join_thread_share, private_dir
from echocare.engine.threads import ThreadPlan, cpu_set

PEER = """
import sys, time
from echocare.engine.thread_share import ThreadShare
share = ThreadShare(4, {int(c) for c in sys.argv[2].split(",")}, sys.argv[1])
share.register()
print("registered", flush=True)
time.sleep(120)
"""


@pytest.fixture
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def _peer(directory, cpus: str) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", PEER, str(directory), cpus], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "registered"
    return proc


def _stop(proc: subprocess.Popen) -> None:
    proc.kill()
    proc.wait(timeout=30)


def test_a_second_training_halves_the_threads_and_gives_them_back(tmp_path, restore_threads):
    share = ThreadShare(4, {0, 1}, tmp_path)
    share.register()
    assert share.threads == 4 and torch.get_num_threads() == 4  # alone: every core
    peer = _peer(tmp_path, "0,1")
    try:
        assert share.rebalance() == 2 and torch.get_num_threads() == 2
        assert len(list(tmp_path.glob("*.json"))) == 2
    finally:
        _stop(peer)
    assert share.rebalance() == 4 and torch.get_num_threads() == 4  # its cores come back
    assert [p.name for p in tmp_path.glob("*.json")] == [f"{os.getpid()}.json"]  # the dead peer's file is gone
    share.close()
    assert not list(tmp_path.glob("*.json"))


def test_disjoint_cpu_sets_do_not_share(tmp_path, restore_threads):
    share = ThreadShare(2, {0, 1}, tmp_path)
    share.register()
    peer = _peer(tmp_path, "2,3")
    try:
        assert share.peers() == 1 and share.rebalance() == 2
    finally:
        _stop(peer)
        share.close()


def test_stale_and_garbled_files_are_handled(tmp_path, restore_threads):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (tmp_path / "dead.json").write_text(json.dumps({"pid": int(dead.stdout), "start": "1", "cpus": [0]}))
    (tmp_path / "reused.json").write_text(json.dumps({"pid": os.getppid(), "start": "not-its-start", "cpus": [0]}))
    (tmp_path / "half.json").write_text('{"pid": 12')  # being written
    share = ThreadShare(3, {0}, tmp_path)
    share.register()
    assert share.threads == 3
    assert sorted(p.name for p in tmp_path.glob("*.json")) == sorted(["half.json", f"{os.getpid()}.json"])
    share.close()


def test_min_peers_counts_the_launch_before_it_registers(tmp_path, restore_threads):
    share = ThreadShare(8, {0}, tmp_path, min_peers=4)
    share.register()
    assert share.threads == 2
    share.close()


def test_max_threads_caps_the_share(tmp_path, restore_threads):
    share = ThreadShare(16, {0}, tmp_path, max_threads=2)  # alone on 16 cores, next to a GPU
    share.register()
    assert share.threads == 2 and torch.get_num_threads() == 2
    share.close()


def test_poll_replans_only_every_few_seconds(tmp_path, restore_threads):
    share = ThreadShare(2, {0}, tmp_path, every_s=3600)
    share.register()
    peer = _peer(tmp_path, "0")
    try:
        assert share.poll() == 2  # not due yet: the plan made at register time stands
        share.every_s = 0
        assert share.poll() == 1
    finally:
        _stop(peer)
        share.close()


class _Probe(nn.Module):
    """Records the intra-op thread count seen at each step."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Linear(4, 1)
        self.seen: list[int] = []

    def forward(self, batch):
        self.seen.append(torch.get_num_threads())
        return {"loss": self.w(batch["image"]).pow(2).mean(), "logs": {}}


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2 if hasattr(os, "sched_getaffinity") else True,
                    reason="needs 2 cores to share")
def test_trainer_gives_cores_to_a_peer_and_unregisters(tmp_path, monkeypatch, restore_threads):
    from accelerate.state import AcceleratorState, GradientState

    registry = tmp_path / "registry"
    monkeypatch.setattr(thread_share, "default_share_dir", lambda: registry)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    cpus = ",".join(str(c) for c in sorted(os.sched_getaffinity(0)))
    peer = _peer(registry, cpus)
    try:
        trainer = Trainer(TrainConfig(max_steps=3, batch_size=2, log_every=1, ckpt_every=3, precision="fp32",
                                      progress=False, tensorboard=False, image_every=0),
                          OptimConfig(lr=1e-3, warmup_steps=0), tmp_path / "run")
        cores = trainer.threads.cores
        task = _Probe()
        trainer.fit(task, [{"image": torch.randn(2, 4)}] * 3)
        assert task.seen and set(task.seen) == {max(1, cores // 2)}  # the peer's half was left to it
        assert [p.name for p in registry.glob("*.json")] == [f"{peer.pid}.json"]  # ours was removed at the end
    finally:
        _stop(peer)
        AcceleratorState._reset_state(True)
        GradientState._reset_state()


def test_an_unwritable_registry_switches_sharing_off(tmp_path, restore_threads):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    share = ThreadShare(2, {0}, blocker / "threads")
    assert share.register() is False  # a warning, no exception: training goes on with its planned threads


def test_the_registry_is_private_to_this_user(tmp_path, restore_threads, monkeypatch):
    loose = tmp_path / "loose"
    loose.mkdir()
    loose.chmod(0o777)
    share = ThreadShare(2, {0}, loose)
    assert share.register() is True
    assert stat.S_IMODE(loose.stat().st_mode) & 0o022 == 0  # our folder: group/other write removed
    share.close()
    fresh = tmp_path / "fresh" / "threads"
    assert private_dir(fresh) is None and stat.S_IMODE(fresh.stat().st_mode) == 0o700

    target = tmp_path / "elsewhere"
    target.mkdir()
    (tmp_path / "link").symlink_to(target)
    assert "not a directory" in private_dir(tmp_path / "link")
    assert ThreadShare(2, {0}, tmp_path / "link").register() is False
    assert not list(target.iterdir())  # nothing written through the link

    monkeypatch.setattr(os, "getuid", lambda: 12345)  # as if the folder belonged to another user
    other = ThreadShare(2, {0}, loose)
    assert other.register() is False and not list(loose.glob("*.json"))


def test_join_registers_a_training_unless_the_user_fixed_the_threads(tmp_path, restore_threads):
    """What Trainer.fit and the benchmark's HF peer (bench/transfer_hf.py) call: a training that does not join
    takes every core beside one that did, and both crawl."""
    plan = ThreadPlan(threads=4, cores=4, local_world_size=1, source="cores/local_world_size")
    peer = _peer(tmp_path, ",".join(str(c) for c in sorted(cpu_set())))
    try:
        share = join_thread_share(plan, True, False, directory=tmp_path)
        assert share is not None and share.threads == 2 and torch.get_num_threads() == 2  # 4 cores, 2 trainings
        assert (tmp_path / f"{os.getpid()}.json").is_file()
        share.close()
        assert not (tmp_path / f"{os.getpid()}.json").exists()
    finally:
        _stop(peer)
    assert join_thread_share(plan, False, False, directory=tmp_path) is None  # train.share_threads: false
    omp = ThreadPlan(threads=1, cores=4, local_world_size=1, source="OMP_NUM_THREADS")
    assert join_thread_share(omp, True, False, directory=tmp_path) is None  # the user fixed the threads
    capped = join_thread_share(plan, True, True, directory=tmp_path)  # on an accelerator: at most 2 threads
    assert capped is not None and capped.threads <= 2
    capped.close()
