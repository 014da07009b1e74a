"""Set-up of DataLoader worker processes shared by the pretraining and fine-tuning loaders.

:func:`worker_init` is the ``worker_init_fn`` of the pretraining loader and of the fine-tuning
:class:`~echocare.data.labeled.EpochLoader`. It does two things:

* **Stop signals are ignored.** A scheduler, ``docker stop`` or a terminal sends SIGTERM / SIGINT to the whole
  process group (``kill -TERM -- -PGID``, Ctrl-C): the workers are in that group too, and if they died the main
  process would fail mid-step ("DataLoader worker ... killed by signal") instead of checkpointing. Workers
  leave the stop to the trainer in the main process; they still exit when the main process exits (torch's
  worker watchdog notices the parent is gone).
* **One intra-op thread.** Workers decode and augment single images, which gains nothing from intra-op
  parallelism; with every worker at torch's default (one thread per core) a loader with ``w`` workers next to
  a training process would run ``(w + 1) x cores`` OpenMP threads.
"""

from __future__ import annotations

import signal

import torch

__all__ = ["STOP_SIGNALS", "ignore_stop_signals", "limit_worker_threads", "worker_init"]

#: The signals a graceful stop reacts to (the main process checkpoints; workers ignore them).
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def ignore_stop_signals() -> None:
    """Ignore SIGTERM and SIGINT in this (worker) process."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)


def limit_worker_threads() -> None:
    """One intra-op thread in this (worker) process."""
    if torch.get_num_threads() != 1:
        torch.set_num_threads(1)


def worker_init(worker_id: int = 0) -> None:
    """``DataLoader(worker_init_fn=...)`` of echocare's loaders (``worker_id`` is unused)."""
    del worker_id
    ignore_stop_signals()
    limit_worker_threads()
