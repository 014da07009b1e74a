"""Set-up of DataLoader worker processes shared by the pretraining and fine-tuning loaders.

Workers decode and augment single images, which gains nothing from intra-op parallelism; with every worker
at torch's default (one thread per core) a loader with ``w`` workers next to a training process would run
``(w + 1) x cores`` OpenMP threads. :func:`worker_init` pins each worker to one intra-op thread (torch's
own worker loop does the same today; doing it here keeps the promise explicit and in one place).
"""

from __future__ import annotations

import torch

__all__ = ["limit_worker_threads", "worker_init"]


def limit_worker_threads() -> None:
    """One intra-op thread in this (worker) process."""
    if torch.get_num_threads() != 1:
        torch.set_num_threads(1)


def worker_init(worker_id: int) -> None:
    """``DataLoader(worker_init_fn=...)`` of echocare's loaders (``worker_id`` is unused)."""
    del worker_id
    limit_worker_threads()
