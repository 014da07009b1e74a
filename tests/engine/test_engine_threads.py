"""Intra-op thread policy: cores available (affinity, cgroup quota) / local processes, OMP_NUM_THREADS wins."""

from __future__ import annotations

import os

import torch

from echocare.engine.threads import (ACCELERATOR_THREADS, available_cores, cgroup_cpu_limit, configure_threads, local_world_size,
                                     plan_threads)


def test_cores_are_divided_among_local_processes():
    assert plan_threads(16, 1, env={}).threads == 16
    assert plan_threads(16, 4, env={}).threads == 4
    assert plan_threads(16, 3, env={}).threads == 5  # floor, never oversubscribe
    assert plan_threads(2, 8, env={}).threads == 1  # never zero
    assert plan_threads(16, 4, env={}).source == "cores/local_world_size"


def test_next_to_an_accelerator_the_threads_are_capped():
    plan = plan_threads(16, 1, env={}, accelerator=True)
    assert (plan.threads, plan.source) == (ACCELERATOR_THREADS, "accelerator cap")
    assert plan_threads(16, 16, env={}, accelerator=True).threads == 1  # the cores' share is smaller: kept
    assert plan_threads(16, 16, env={}, accelerator=True).source == "cores/local_world_size"
    assert plan_threads(16, 1, env={"OMP_NUM_THREADS": "12"}, accelerator=True).threads == 12  # the user decided


def test_omp_num_threads_is_respected_and_garbage_ignored():
    plan = plan_threads(16, 4, env={"OMP_NUM_THREADS": "3"})
    assert (plan.threads, plan.source) == (3, "OMP_NUM_THREADS")
    assert plan_threads(16, 4, env={"OMP_NUM_THREADS": "zero"}).threads == 4
    assert plan_threads(16, 4, env={"OMP_NUM_THREADS": "0"}).threads == 4
    assert plan_threads(16, 4, env={"OMP_NUM_THREADS": " "}).threads == 4


def test_local_world_size_from_the_launcher_env():
    assert local_world_size({}) == 1
    assert local_world_size({"LOCAL_WORLD_SIZE": "4"}) == 4
    assert local_world_size({"LOCAL_WORLD_SIZE": "bad"}) == 1
    assert local_world_size({"LOCAL_WORLD_SIZE": "0"}) == 1


def test_affinity_and_cgroup_quota_cap_the_cores(tmp_path):
    assert available_cores({0, 1, 2, 3}, quota=None) in (4, min(4, cgroup_cpu_limit() or 4))
    assert available_cores({0, 1, 2, 3}, quota=2) == 2
    assert available_cores({5}, quota=8) == 1
    f = tmp_path / "cpu.max"
    f.write_text("250000 100000\n")
    assert cgroup_cpu_limit(f) == 3  # 2.5 CPUs -> 3
    f.write_text("max 100000\n")
    assert cgroup_cpu_limit(f) is None
    assert cgroup_cpu_limit(tmp_path / "missing") is None
    if hasattr(os, "sched_getaffinity"):
        assert 1 <= available_cores() <= len(os.sched_getaffinity(0))


def test_configure_threads_applies_the_plan(monkeypatch):
    before = torch.get_num_threads()
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    try:
        torch.set_num_threads(2)
        plan = configure_threads()
        assert plan.threads == 1 and plan.local_world_size == 2
        assert torch.get_num_threads() == 1
        assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"  # exported for processes started later
    finally:
        torch.set_num_threads(before)
