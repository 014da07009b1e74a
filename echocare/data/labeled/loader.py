"""A resumable, rank-aware epoch loader over a :class:`~echocare.data.labeled.dataset.LabeledDataset`.

Each epoch draws a permutation from ``(seed, epoch)``, gives every process its strided share and
cuts it into batches; with ``weights`` (e.g. class-balanced sampling) the epoch is instead ``len(dataset)``
draws with replacement, each item with probability proportional to its weight. ``state_dict()`` holds the epoch
and the number of batches already handed out, so a resumed run skips exactly those batches — without decoding
them — and continues with the same order (the trainer checkpoints this position with the model).

Worker processes (``num_workers > 0``) are started once and kept across epochs when the dataset takes
``dataset[(epoch, i)]`` (``epoch_in_index``, as :class:`~echocare.data.labeled.dataset.LabeledDataset` does):
a small set is many short epochs, and restarting the workers at each one cost half the throughput of 4 workers
on 80 images (bench/finetune_speed.py). :meth:`EpochLoader.close` stops them (the trainer calls it at the end
of ``fit``). Other datasets get fresh workers each epoch.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from torch.utils.data import DataLoader

from echocare.data.labeled.dataset import LabeledDataset, collate_labeled
from echocare.data.workers import worker_init

__all__ = ["EpochLoader"]


class EpochLoader:
    """Iterate batches of one epoch per ``iter()``; reiterating starts the next epoch.

    Args:
        dataset: The dataset.
        batch_size: Items per batch (per process).
        shuffle: Draw a new permutation each epoch (training) or keep order (evaluation).
        seed: Permutation seed.
        rank: This process's index.
        world_size: Number of processes.
        num_workers: DataLoader worker processes.
        drop_last: Drop a last partial batch (only when at least one full batch exists).
        weights: Per-item sampling weights (len(dataset), >= 0, some > 0) for weighted draws with
            replacement; None = a permutation.
    """

    def __init__(self, dataset: LabeledDataset, batch_size: int, shuffle: bool = True, seed: int = 0,
                 rank: int = 0, world_size: int = 1, num_workers: int = 0, drop_last: bool = True,
                 weights: Sequence[float] | None = None) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.weights = None
        if weights is not None:
            w = np.asarray(weights, dtype=float)
            if w.shape != (len(dataset),) or not np.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
                raise ValueError(f"weights must be {len(dataset)} finite values >= 0 with a positive sum")
            self.weights = w / w.sum()
        self.dataset = dataset
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.rank, self.world_size = rank, world_size
        self.num_workers = num_workers
        self.drop_last = drop_last
        self.epoch = 0
        self.consumed = 0
        self._persistent: DataLoader | None = None  # workers kept across epochs (see the module docstring)
        self._plan: list[list[tuple[int, int]]] = []  # what its batch sampler hands out next

    def _batches(self, epoch: int) -> list[list[int]]:
        n = len(self.dataset)
        rng = np.random.default_rng([self.seed, epoch])
        if self.weights is not None:
            order = rng.choice(n, size=n, replace=True, p=self.weights)
        else:
            order = rng.permutation(n) if self.shuffle else np.arange(n)
        share = order[self.rank :: self.world_size].tolist()
        batches = [share[i : i + self.batch_size] for i in range(0, len(share), self.batch_size)]
        if self.drop_last and len(batches) > 1 and len(batches[-1]) < self.batch_size:
            batches.pop()
        return batches

    def __len__(self) -> int:
        return len(self._batches(self.epoch))

    def __iter__(self) -> Iterator[dict[str, Any]]:
        batches = self._batches(self.epoch)[self.consumed :]
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(self.epoch)
        for batch in self._load(batches):
            self.consumed += 1
            yield batch
        self.epoch += 1
        self.consumed = 0

    def _load(self, batches: list[list[int]]) -> Iterator[dict[str, Any]]:
        """Batches of items, read in this process, by workers kept across epochs, or by fresh workers."""
        if self.num_workers > 0 and getattr(self.dataset, "epoch_in_index", False):
            self._plan = [[(self.epoch, i) for i in b] for b in batches]
            if self._persistent is None:
                self._persistent = DataLoader(self.dataset, batch_sampler=_Plan(self), collate_fn=collate_labeled,
                                              num_workers=self.num_workers, persistent_workers=True,
                                              worker_init_fn=worker_init)
            return iter(self._persistent)
        return iter(DataLoader(self.dataset, batch_sampler=batches, collate_fn=collate_labeled,
                               num_workers=self.num_workers, persistent_workers=False,
                               worker_init_fn=worker_init if self.num_workers > 0 else None))

    def close(self) -> None:
        """Stop the worker processes kept across epochs (a later epoch starts new ones)."""
        loader, self._persistent = self._persistent, None
        workers = getattr(loader, "_iterator", None)
        if workers is not None and hasattr(workers, "_shutdown_workers"):
            workers._shutdown_workers()  # what the iterator's __del__ does, now rather than at garbage collection

    def state_dict(self) -> dict[str, int]:
        """Position: epoch and batches already yielded in it."""
        return {"epoch": self.epoch, "consumed": self.consumed, "seed": self.seed}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Continue from a :meth:`state_dict` position."""
        self.epoch = int(state["epoch"])
        self.consumed = int(state["consumed"])


class _Plan:
    """Batch sampler of the persistent DataLoader: the owner's current plan, read when an epoch's iteration starts."""

    def __init__(self, owner: EpochLoader) -> None:
        self.owner = owner

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        return iter(list(self.owner._plan))

    def __len__(self) -> int:
        return len(self.owner._plan)
