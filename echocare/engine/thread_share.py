"""Cores shared among the echocare trainings running on one machine, re-planned while they run.

:func:`echocare.engine.threads.configure_threads` splits the cores among the processes of *one* launch
(``LOCAL_WORLD_SIZE``). Two independent trainings on one box know nothing of each other: each takes every
core, OpenMP barriers of ``2 x cores`` threads spin on ``cores`` cores, and both collapse far below half of
their solo speed. :class:`ThreadShare` lets them find each other:

* each training registers one small JSON file (pid, process start time, CPU set) in a per-user directory
  (``$TMPDIR/echocare-<uid>/threads``) and removes it when it ends;
* every few seconds it counts the live registrations whose CPU sets overlap its own (itself included;
  files of dead processes are removed) and sets ``torch.set_num_threads(max(1, cores // n))``, so a run
  that started alone gives half of its cores back when a second one starts, and takes them again when
  that one ends.

It is switched off when ``OMP_NUM_THREADS`` is set (the user decided) and with ``train.share_threads:
false``. Processes other than echocare trainings are not seen.

The registry lives in a shared temporary directory, so it must be private: its folders are created with mode
0700 (group/other write bits of ours are removed), and a folder that is not a real directory owned by this user
(another local user could pre-create ``echocare-<uid>`` to plant files that lower our thread count) switches
the sharing off with a warning.
"""

from __future__ import annotations

import json
import logging
import os
import stat
import tempfile
import time
from pathlib import Path

import torch

logger = logging.getLogger(__name__)

__all__ = ["ThreadShare", "default_share_dir", "join_thread_share", "private_dir"]


def default_share_dir() -> Path:
    """``$TMPDIR/echocare-<uid>/threads``: one registry per user and machine."""
    uid = os.getuid() if hasattr(os, "getuid") else 0
    return Path(tempfile.gettempdir()) / f"echocare-{uid}" / "threads"


def private_dir(path: Path) -> str | None:
    """Create ``path`` (mode 0700) if missing and make sure only this user can write it; returns why it is
    unsafe (a link or non-directory, another owner), or None. Group/other write bits of our own folder are
    removed."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = path.lstat()
    if not stat.S_ISDIR(st.st_mode):
        return f"{path} is not a directory (a link?)"
    if hasattr(os, "getuid") and st.st_uid != os.getuid():
        return f"{path} belongs to uid {st.st_uid}, not to this user (uid {os.getuid()})"
    if st.st_mode & 0o022:
        os.chmod(path, stat.S_IMODE(st.st_mode) & ~0o022)
    return None


def _start_time(pid: int) -> str | None:
    """Start time of ``pid`` in clock ticks since boot (``/proc/PID/stat`` field 22), or None if unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[-1].split()[19]  # fields after "(comm)"; starttime is field 22 overall


def _alive(pid: int, start: str | None) -> bool:
    """Whether ``pid`` still runs and is the process that registered (not a reused pid)."""
    if start is not None and Path("/proc").is_dir():
        return _start_time(pid) == start
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class ThreadShare:
    """Registration of this process and the thread count derived from the live registrations.

    Args:
        cores: Cores available to this process (the budget to share).
        cpus: Its CPU set (registrations with a disjoint set do not count).
        directory: Registry directory (default :func:`default_share_dir`, whose parent ``echocare-<uid>`` is
            checked too).
        every_s: Seconds between two re-plans in :meth:`poll`.
        min_peers: Processes known to share the cores anyway (the launch's local world size), counted
            even before they have registered.
        max_threads: Never more than this many threads (the accelerator cap of
            :func:`echocare.engine.threads.plan_threads`); None = no cap.
    """

    def __init__(self, cores: int, cpus: set[int], directory: str | Path | None = None,
                 every_s: float = 2.0, min_peers: int = 1, max_threads: int | None = None) -> None:
        self.cores = max(1, cores)
        self.cpus = set(cpus)
        self.dir = Path(directory) if directory is not None else default_share_dir()
        # folders that must be private: the registry, and for the default one also its echocare-<uid> parent
        self._private = [self.dir] if directory is not None else [self.dir.parent, self.dir]
        self.every_s = every_s
        self.min_peers = max(1, min_peers)
        self.max_threads = max_threads
        self.pid = os.getpid()
        self.path = self.dir / f"{self.pid}.json"
        self.threads = torch.get_num_threads()
        self._last = 0.0

    def register(self) -> bool:
        """Write this process's file (atomically) and plan the threads once; False (and a warning) when the
        registry cannot be written, in which case the threads stay as planned and training goes on."""
        record = {"pid": self.pid, "start": _start_time(self.pid), "cpus": sorted(self.cpus)}
        tmp = self.path.with_suffix(".tmp")
        try:
            for folder in self._private:
                unsafe = private_dir(folder)
                if unsafe:
                    logger.warning("thread sharing off: %s", unsafe)
                    return False
            tmp.write_text(json.dumps(record))
            os.replace(tmp, self.path)
        except OSError as err:
            logger.warning("thread sharing off: cannot write %s (%s)", self.path, err)
            return False
        self.rebalance()
        return True

    def close(self) -> None:
        """Remove this process's file (the others take its cores at their next re-plan)."""
        self.path.unlink(missing_ok=True)

    def peers(self) -> int:
        """Live registered processes whose CPU sets overlap this one's, this process included."""
        n = 1
        for f in self.dir.glob("*.json"):
            if f == self.path:
                continue
            try:
                rec = json.loads(f.read_text())
                pid, start, cpus = int(rec["pid"]), rec.get("start"), set(rec["cpus"])
            except (OSError, ValueError, KeyError, TypeError):
                continue  # being written, or not ours to judge
            if not _alive(pid, start):
                f.unlink(missing_ok=True)
                continue
            if cpus & self.cpus:
                n += 1
        return n

    def rebalance(self) -> int:
        """Set this process's intra-op threads to ``cores // peers`` (at least 1, at most ``max_threads``);
        returns the count."""
        self._last = time.monotonic()
        try:
            n = self.peers()
        except OSError as err:  # registry unreadable: keep the current plan
            logger.debug("thread registry %s unreadable: %s", self.dir, err)
            return self.threads
        threads = max(1, self.cores // max(n, self.min_peers))
        if self.max_threads is not None:
            threads = min(threads, self.max_threads)
        if threads != self.threads:
            torch.set_num_threads(threads)
            logger.info("intra-op threads: %d -> %d (%d echocare training(s) share %d cores)", self.threads,
                        threads, n, self.cores)
            self.threads = threads
        return threads

    def poll(self) -> int:
        """:meth:`rebalance` when ``every_s`` seconds have passed since the last one (cheap otherwise)."""
        if time.monotonic() - self._last >= self.every_s:
            return self.rebalance()
        return self.threads


def join_thread_share(plan: "ThreadPlan", enabled: bool, accelerator: bool,  # noqa: F821 - engine.threads
                      directory: str | Path | None = None) -> ThreadShare | None:
    """Register a training that is about to start (``Trainer.fit``, the benchmark's HF peer) and plan its threads.

    Args:
        plan: What :func:`echocare.engine.threads.configure_threads` decided for this process.
        enabled: ``train.share_threads``.
        accelerator: The model runs on an accelerator (threads capped at ``ACCELERATOR_THREADS``).
        directory: Registry folder (default :func:`default_share_dir`).

    Returns:
        The registered share (poll it every step, close it at the end), or None when sharing is off
        (``enabled`` false, ``OMP_NUM_THREADS`` set, or the registry cannot be written).
    """
    from echocare.engine.threads import ACCELERATOR_THREADS, cpu_set

    if not enabled or plan.source == "OMP_NUM_THREADS":
        return None
    share = ThreadShare(plan.cores, cpu_set(), directory, min_peers=plan.local_world_size,
                        max_threads=ACCELERATOR_THREADS if accelerator else None)
    return share if share.register() else None
