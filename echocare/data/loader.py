"""The pretraining loader: ``PretrainStream`` batches through a torch ``DataLoader`` with exact resume.

Guarantee: with the same shards, seed, batch size, ``num_workers`` and world size, a loader restored
with ``load_state_dict(state)`` yields exactly the batches (keys, pixels, masks, targets) that the
uninterrupted loader would have yielded after the moment ``state_dict()`` was taken.

How: every worker's stream is a pure function of (seed, epoch, rank, worker); batches are handed out
in a canonical order (round-robin over workers, skipping finished ones) independent of process
timing; the state records, per worker, how many undecoded samples and batches were consumed; on
resume each worker regenerates its stream and fast-forwards over those samples without decoding.
"""

from __future__ import annotations

import logging
import math
from collections import Counter, deque
from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from echocare.data.stream import Plan, PretrainStream, SkipCounter, decode_gray, finalize_batch
from echocare.data.workers import worker_init

__all__ = ["PretrainLoader", "PretrainStream", "SkipCounter", "decode_gray", "make_pretrain_loader"]

logger = logging.getLogger(__name__)

STATE_VERSION = 1


class _PlannedStream(IterableDataset):
    """What the DataLoader iterates: one pass of the stream following a plan, batch-wise."""

    def __init__(self, stream: PretrainStream, plan: Plan) -> None:
        super().__init__()
        self.stream, self.plan = stream, plan

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        worker, num_workers = (info.id, info.num_workers) if info is not None else (0, 1)
        yield from self.stream.iter_worker(self.plan, worker, num_workers)


class PretrainLoader:
    """Iterable of pretraining batches with ``state_dict``/``load_state_dict`` for exact resume.

    Each full pass is one epoch; the epoch counter then advances. Stopping early (``break``) keeps the
    position: the next ``iter()`` continues the same epoch. Batches:
    ``{"image": (B,1,S,S), "mask": (B,S/p,S/p), "targets": (B,N) (with an ontology), "key": [str],
    "dataset": [str]}``. Skipped corrupt inputs are counted in :attr:`stats`.

    Args:
        dataset: the stream.
        batch_size: samples per batch.
        num_workers: DataLoader worker processes (0 = in-process).
        drop_last: drop each worker's final partial batch (non-resampled) / the rank's last partial batch.
        even_batches: with several ranks and a known, unweighted epoch, stop every rank after the same
            number of batches (the smallest rank's) so DDP never waits on a rank that ran out.
        pin_memory: pin the float32 batches (only when CUDA is available).
        prefetch_factor, timeout, multiprocessing_context: passed to ``DataLoader``.
    """

    def __init__(self, dataset: PretrainStream, batch_size: int, num_workers: int = 0, drop_last: bool = False,
                 even_batches: bool = True, pin_memory: bool = False, prefetch_factor: int | None = None,
                 timeout: float = 0, multiprocessing_context: Any = None) -> None:
        if not isinstance(batch_size, int) or batch_size <= 0:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        if not isinstance(num_workers, int) or num_workers < 0:
            raise ValueError(f"num_workers must be an int >= 0, got {num_workers!r}")
        self.dataset, self.batch_size, self.num_workers = dataset, batch_size, num_workers
        self.drop_last, self.even_batches = bool(drop_last), bool(even_batches)
        # pinning happens here, after the uint8 -> float32 conversion (pinning the workers' uint8 would be wasted)
        self.pin_memory = bool(pin_memory) and torch.cuda.is_available()
        self._dl_kwargs: dict[str, Any] = {"timeout": timeout, "multiprocessing_context": multiprocessing_context}
        if num_workers > 0 and prefetch_factor is not None:
            self._dl_kwargs["prefetch_factor"] = prefetch_factor
        self._skipped: Counter[str] = Counter()
        self._damaged: Counter[str] = Counter()  # shard name -> samples lost to damage
        self._samples = 0
        self._where: tuple[int, int] | None = None  # (rank, world) the position refers to
        self._reset_position(0)

    # ------------------------------------------------------------------ position
    def _reset_position(self, epoch: int) -> None:
        self.epoch = int(epoch)
        self.dataset.epoch = self.epoch
        self._batches = 0  # batches handed out in this epoch
        self._ptr = 0  # next worker in the round-robin
        self._positions: dict[int, tuple[int, int]] = {}  # worker -> (raw samples, batches)
        self._ended: set[int] = set()

    def set_epoch(self, epoch: int) -> None:
        """Start ``epoch`` from its beginning."""
        self._reset_position(epoch)

    @property
    def stats(self) -> dict[str, Any]:
        """``{"skipped": total, "skipped_by_reason": {...}, "damaged_shards": {shard name: samples lost},
        "samples": yielded samples, "epoch", "batches"}``."""
        return {"skipped": sum(self._skipped.values()), "skipped_by_reason": dict(self._skipped),
                "damaged_shards": dict(self._damaged), "samples": self._samples, "epoch": self.epoch,
                "batches": self._batches}

    def state_dict(self) -> dict[str, Any]:
        """Plain (JSON-able) position: epoch, batches handed out, per-worker progress, counters."""
        return {
            "version": STATE_VERSION, "epoch": self.epoch, "batches": self._batches, "ptr": self._ptr,
            "workers": {str(w): list(p) for w, p in self._positions.items()}, "ended": sorted(self._ended),
            "num_workers": self.num_workers, "batch_size": self.batch_size, "seed": self.dataset.seed,
            "drop_last": self.drop_last, "where": list(self._where) if self._where else None,
            "skipped": dict(self._skipped), "damaged_shards": dict(self._damaged), "samples": self._samples,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a position taken by :meth:`state_dict`.

        Raises:
            ValueError: the state was taken with a different seed, batch size, worker count or
                drop_last (the stream could not be reproduced), naming the mismatching fields.
        """
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"loader state version {state.get('version')!r} is not {STATE_VERSION}")
        ours = {"num_workers": self.num_workers, "batch_size": self.batch_size, "seed": self.dataset.seed,
                "drop_last": self.drop_last}
        diff = {k: (state.get(k), v) for k, v in ours.items() if state.get(k) != v}
        if diff:
            raise ValueError(f"cannot resume the data stream exactly; (saved, current) differ: {diff}")
        self._reset_position(int(state["epoch"]))
        self._batches, self._ptr = int(state["batches"]), int(state["ptr"])
        self._positions = {int(w): (int(p[0]), int(p[1])) for w, p in state["workers"].items()}
        self._ended = {int(w) for w in state["ended"]}
        self._where = tuple(state["where"]) if state.get("where") else None
        self._skipped = Counter({str(k): int(v) for k, v in state.get("skipped", {}).items()})
        self._damaged = Counter({str(k): int(v) for k, v in state.get("damaged_shards", {}).items()})
        self._samples = int(state.get("samples", 0))

    # ------------------------------------------------------------------ length
    def _rank_batches(self, rank: int, world: int) -> float | None:
        per_worker = self.dataset.rank_worker_samples(rank, world, self.num_workers, self.epoch)
        if per_worker is None:
            return None
        rounding = math.floor if self.drop_last else math.ceil
        return sum(rounding(round(n, 6) / self.batch_size) for n in per_worker)

    def _limit(self, rank: int, world: int) -> int | None:
        """Batches this rank may yield this epoch (``None``: until the data runs out)."""
        ds = self.dataset
        if ds.resampled or world == 1 or not self.even_batches or ds.factors is not None:
            return None
        counts = [self._rank_batches(r, world) for r in range(world)]
        if any(c is None for c in counts):
            logger.warning("epoch length per rank unknown (no index.json counts): ranks may yield different "
                           "numbers of batches; use resampled=True for multi-node training")
            return None
        return int(min(counts))

    def __len__(self) -> int:
        """Batches this rank yields in the current epoch (exact when resampled or unweighted with an
        index; the expected value under dataset weights).

        Raises:
            TypeError: unknown (no ``index.json`` counts and not resampled).
        """
        ds = self.dataset
        if ds.resampled:
            n = int(ds.epoch_length)
            return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)
        rank, world = ds.resolve_world()
        limit = self._limit(rank, world)
        if limit is not None:
            return limit
        n = self._rank_batches(rank, world)
        if n is None:
            raise TypeError("len(loader) unknown: no index.json with per-shard counts; pass index= or resampled=True")
        return int(n)

    # ------------------------------------------------------------------ iteration
    def __iter__(self) -> Iterator[dict[str, Any]]:
        rank, world = self.dataset.resolve_world()
        if self._where is not None and self._batches and tuple(self._where) != (rank, world):
            raise ValueError(f"loader position was saved on (rank, world_size)={tuple(self._where)} but this "
                             f"process is {(rank, world)}: exact resume needs the same world size")
        self._where = (rank, world)
        resumed = bool(self._positions or self._batches)
        yielded = yield from self._one_pass(rank, world)
        if not yielded and resumed:
            # the saved position was the very end of an epoch: continue with the next one
            yielded = yield from self._one_pass(rank, world)
        if not yielded:
            logger.warning("epoch %d yielded no batches on rank %d (shards: %s...)", self.epoch - 1, rank,
                           self.dataset.urls[:2])

    def _one_pass(self, rank: int, world: int) -> Iterator[dict[str, Any]]:
        """Finish the current epoch from the saved position, then advance the epoch; returns #batches."""
        limit = self._limit(rank, world)
        plan = Plan(epoch=self.epoch, rank=rank, world_size=world, batch_size=self.batch_size,
                    drop_last=self.drop_last, skip=dict(self._positions))
        n_workers = max(1, self.num_workers)
        yielded = 0
        if limit is None or self._batches < limit:
            init = worker_init if self.num_workers > 0 else None  # workers: stop signals ignored, one thread
            loader = DataLoader(_PlannedStream(self.dataset, plan), batch_size=None, num_workers=self.num_workers,
                                worker_init_fn=init, **self._dl_kwargs)
            it = iter(loader)
            try:
                for batch in self._canonical(it, n_workers, limit):
                    yielded += 1
                    yield batch
            finally:
                del it
        logger.debug("epoch %d finished after %d batches (rank %d)", self.epoch, self._batches, rank)
        self._reset_position(self.epoch + 1)
        return yielded

    def _canonical(self, it: Iterator[dict[str, Any]], n_workers: int, limit: int | None) -> Iterator[dict[str, Any]]:
        """Hand out worker batches round-robin (skipping finished workers), whatever order they arrive in."""
        pending: dict[int, deque] = {w: deque() for w in range(n_workers)}
        while len(self._ended) < n_workers and (limit is None or self._batches < limit):
            w = self._ptr
            if w in self._ended:
                self._ptr = (w + 1) % n_workers
                continue
            while not pending[w]:
                item = next(it, None)
                if item is None:
                    raise RuntimeError(f"data workers stopped before worker {w} reported its end")
                pending[item["_worker"]].append(item)
            item = pending[w].popleft()
            self._skipped.update(item["_stats"])
            self._damaged.update(item.get("_shards", {}))
            self._ptr = (w + 1) % n_workers
            if item.get("_end"):
                self._ended.add(w)
                continue
            self._positions[w] = (int(item["_raw"]), int(item["_batch"]))
            self._batches += 1
            batch = finalize_batch({k: v for k, v in item.items() if not k.startswith("_")})
            if self.pin_memory:
                batch = {k: (v.pin_memory() if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}
            self._samples += len(batch["key"])
            yield batch

    def __repr__(self) -> str:
        return f"PretrainLoader({self.dataset!r}, batch_size={self.batch_size}, num_workers={self.num_workers})"


def make_pretrain_loader(ds: PretrainStream, batch_size: int, num_workers: int = 0, drop_last: bool = False,
                         even_batches: bool = True, pin_memory: bool = False, prefetch_factor: int | None = None,
                         timeout: float = 0, multiprocessing_context: Any = None) -> PretrainLoader:
    """Wrap a :class:`PretrainStream` into a resumable batch loader (see :class:`PretrainLoader`)."""
    return PretrainLoader(ds, batch_size, num_workers=num_workers, drop_last=drop_last, even_batches=even_batches,
                          pin_memory=pin_memory, prefetch_factor=prefetch_factor, timeout=timeout,
                          multiprocessing_context=multiprocessing_context)
