"""Intra-op threads per process that share the machine: cores available to this process / local processes.

PyTorch's default is one intra-op thread per *visible* core in every process. Two trainings on one box, or
several ranks per node under ``accelerate launch`` / ``torchrun`` on CPU, then run ``k x cores`` OpenMP
threads on ``cores`` cores; OpenMP barriers spin and the runs collapse far below their fair share.

Rule (:func:`plan_threads`): ``OMP_NUM_THREADS`` when set (a positive integer), else
``max(1, cores // local_world_size)`` where ``cores`` is the affinity mask of this process
(``os.sched_getaffinity``) capped by a cgroup CPU quota (``/sys/fs/cgroup/cpu.max``) and the local world size
is ``LOCAL_WORLD_SIZE`` (set by torchrun and ``accelerate launch``). Note torchrun sets
``OMP_NUM_THREADS=1`` for multi-process launches when it is unset; that value is respected.

Next to an accelerator (the model on a GPU) the count is capped at :data:`ACCELERATOR_THREADS`: the training
process then only launches kernels and does small host-side tensor work, and its extra OpenMP threads spin on
the cores that the DataLoader workers need. Measured on one H200 with 16 cores (docs/performance.md, "GPU"):
the small recipe at 128 px ran at ~1000 img/s with 2 threads and ~900 with 16; three such runs at once, each
at 2 threads, kept ~1000 img/s each, while two runs at 16 and 5 threads (with 3 loader workers each) fell to
~47 img/s.

Spinning: the OpenMP runtime in the pip torch wheels (GNU libgomp) reads ``OMP_WAIT_POLICY`` and
``GOMP_SPINCOUNT`` once, when it is loaded (at ``import torch``), so they cannot be changed for a running
process. :func:`configure_threads` exports ``OMP_WAIT_POLICY=PASSIVE`` (unless set) for processes started
afterwards (spawned workers, subprocesses); for the training process itself set it in the environment
before launch (``OMP_WAIT_POLICY=PASSIVE echocare pretrain ...``). DataLoader workers run one intra-op
thread (:func:`echocare.data.workers.worker_init`).

Independent trainings (two ``echocare pretrain`` runs on one box) are not one launch; while ``fit`` runs,
:class:`echocare.engine.thread_share.ThreadShare` lets them find each other and re-plan their threads.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

logger = logging.getLogger(__name__)

__all__ = ["ACCELERATOR_THREADS", "ThreadPlan", "available_cores", "configure_threads", "cgroup_cpu_limit", "cpu_set", "local_world_size",
           "plan_threads"]

CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")

#: Intra-op threads of a training process whose model runs on an accelerator (see the module docstring).
ACCELERATOR_THREADS = 2


@dataclass(frozen=True)
class ThreadPlan:
    """What :func:`configure_threads` decided."""

    threads: int  # intra-op threads of this process
    cores: int  # cores available to this process
    local_world_size: int  # processes sharing them
    source: str  # "OMP_NUM_THREADS", "cores/local_world_size" or "accelerator cap"


def cgroup_cpu_limit(path: Path = CGROUP_CPU_MAX) -> int | None:
    """CPUs allowed by a cgroup v2 quota (``"quota period"``, rounded up), or None (no file / ``max``)."""
    try:
        quota, period = path.read_text().split()[:2]
    except (OSError, ValueError):
        return None
    if quota == "max":
        return None
    try:
        return max(1, math.ceil(int(quota) / int(period)))
    except (ValueError, ZeroDivisionError):
        return None


def cpu_set() -> set[int]:
    """CPUs this process may run on (``os.sched_getaffinity``; every CPU where unsupported)."""
    try:
        return set(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        return set(range(os.cpu_count() or 1))


def available_cores(affinity: set[int] | None = None, quota: int | None = None) -> int:
    """Cores this process may run on: its affinity mask, capped by a cgroup CPU quota.

    Args:
        affinity: CPU set (default: ``os.sched_getaffinity(0)``, or ``os.cpu_count()`` where unsupported).
        quota: CPU limit from the cgroup (default: :func:`cgroup_cpu_limit`).
    """
    if affinity is None:
        affinity = cpu_set()
    quota = cgroup_cpu_limit() if quota is None else quota
    cores = max(1, len(affinity))
    return min(cores, quota) if quota else cores


def local_world_size(env: Mapping[str, str] | None = None) -> int:
    """Processes of this launch on this node (``LOCAL_WORLD_SIZE``; 1 when not launched)."""
    env = os.environ if env is None else env
    try:
        return max(1, int(env.get("LOCAL_WORLD_SIZE", "1")))
    except ValueError:
        return 1


def plan_threads(cores: int, local_world: int, env: Mapping[str, str] | None = None,
                 accelerator: bool = False) -> ThreadPlan:
    """Intra-op threads for one process (pure arithmetic, see the module docstring).

    Args:
        cores: cores available to this process.
        local_world: processes sharing them.
        env: environment (default ``os.environ``); a positive integer ``OMP_NUM_THREADS`` wins.
        accelerator: the model runs on an accelerator: at most :data:`ACCELERATOR_THREADS`.
    """
    env = os.environ if env is None else env
    raw = env.get("OMP_NUM_THREADS", "").strip()
    if raw:
        try:
            n = int(raw)
        except ValueError:
            n = 0
        if n > 0:
            return ThreadPlan(n, cores, local_world, "OMP_NUM_THREADS")
        logger.warning("ignoring OMP_NUM_THREADS=%r (not a positive integer)", raw)
    share = max(1, cores // max(1, local_world))
    if accelerator and share > ACCELERATOR_THREADS:
        return ThreadPlan(ACCELERATOR_THREADS, cores, local_world, "accelerator cap")
    return ThreadPlan(share, cores, local_world, "cores/local_world_size")


def configure_threads(accelerator: bool = False) -> ThreadPlan:
    """Apply :func:`plan_threads` to this process (``torch.set_num_threads``) and export
    ``OMP_WAIT_POLICY=PASSIVE`` for processes started later. Idempotent; call at trainer / job start.

    Args:
        accelerator: the model runs on an accelerator (caps the threads, see the module docstring).
    """
    plan = plan_threads(available_cores(), local_world_size(), accelerator=accelerator)
    if torch.get_num_threads() != plan.threads:
        torch.set_num_threads(plan.threads)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    logger.info("intra-op threads: %d (%s; %d cores available, %d local process(es))", plan.threads,
                plan.source, plan.cores, plan.local_world_size)
    return plan
