"""Seeding, shard splitting, shuffle buffers and per-dataset sampling weights for the stream side.

Everything random in the pretraining stream is derived from integers with :func:`derive_seed`, so a
stream is a pure function of ``(seed, epoch, rank, worker, position)``.

Dataset balancing ("anatomically balanced" sampling of the EchoCare report) is done with *repeat
factors*: a sample of dataset ``d`` enters the stream ``floor(r_d)`` times plus once more with
probability ``frac(r_d)``, where ``r_d = p_d * L / n_d`` (``p_d`` the wanted share, ``n_d`` the
dataset size from ``index.json``, ``L`` the wanted samples per epoch). Datasets with ``r_d < 1`` are
thinned *before* decoding (only tar bytes are read); datasets with ``r_d > 1`` are repeated, each
copy getting its own augmentation and mask. See docs/data-loader.md for why this was chosen over
one stream per dataset.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

import numpy as np

T = TypeVar("T")

# Stream tags so that different random consumers never share a seed.
TAG_SHARDS = 1
TAG_SHUFFLE = 2
TAG_REPEAT = 3
TAG_BATCH = 4
TAG_RESAMPLE = 5


def derive_seed(*parts: int) -> int:
    """A 63-bit seed that depends on every integer in ``parts`` (order matters).

    Args:
        *parts: non-negative integers, e.g. ``(seed, epoch, global_worker, tag)``.

    Returns:
        An int in ``[0, 2**63)`` usable for ``torch.Generator.manual_seed`` and ``random.Random``.
    """
    state = np.random.SeedSequence([int(p) & 0xFFFFFFFFFFFFFFFF for p in parts]).generate_state(2, np.uint32)
    return (int(state[0]) << 31 | int(state[1]) >> 1) & ((1 << 63) - 1)


def shuffle_shards(shards: Sequence[T], seed: int, epoch: int, enabled: bool = True) -> list[T]:
    """Epoch-dependent permutation of the shard list, identical on every rank and worker."""
    out = list(shards)
    if enabled:
        random.Random(derive_seed(seed, epoch, TAG_SHARDS)).shuffle(out)
    return out


def split_shards(shards: Sequence[T], rank: int, world_size: int, worker: int, num_workers: int) -> list[T]:
    """``split_by_node`` then ``split_by_worker``: the shards one (rank, worker) pair reads.

    The rank's share (``shards[rank::world_size]``) does not depend on ``num_workers``.
    """
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} outside world_size {world_size}")
    if not 0 <= worker < num_workers:
        raise ValueError(f"worker {worker} outside num_workers {num_workers}")
    return list(shards[rank::world_size])[worker::num_workers]


def shuffle_buffer(items: Iterable[T], size: int, rng: random.Random) -> Iterator[T]:
    """Classic streaming shuffle: fill ``size`` items, then emit a random one per new arrival.

    Args:
        items: source iterator (pulled lazily, one item per emitted item once the buffer is full).
        size: buffer size; ``<= 1`` disables shuffling.
        rng: the random source (its sequence fully determines the order).
    """
    if size <= 1:
        yield from items
        return
    buf: list[T] = []
    for item in items:
        if len(buf) < size:
            buf.append(item)
            continue
        j = rng.randrange(size)
        out, buf[j] = buf[j], item
        yield out
    rng.shuffle(buf)
    yield from buf


def parse_dataset_weights(spec: str | Mapping[str, float] | None, counts: Mapping[str, int]) -> dict[str, float] | None:
    """Turn a weight spec into normalised target shares ``p_d`` (summing to 1).

    Args:
        spec: ``None`` (natural proportions, no reweighting), ``"temperature:T"`` (``p_d ∝ n_d**T``;
            T=1 natural, T=0 uniform over datasets) or an explicit ``{dataset: weight}`` mapping
            (``p_d ∝ weight``; weight 0 excludes a dataset; every dataset must be listed).
        counts: images per dataset, from ``index.json`` ``"datasets"``.

    Returns:
        ``{dataset: p_d}`` or ``None`` when ``spec`` is ``None``.

    Raises:
        ValueError: malformed spec, unknown or missing dataset names, negative or all-zero weights.
    """
    if spec is None:
        return None
    if not counts:
        raise ValueError("dataset_weights needs per-dataset counts (index.json 'datasets'); none were found")
    bad_counts = {d: n for d, n in counts.items() if int(n) < 0}
    if bad_counts:
        raise ValueError(f"negative dataset counts in index: {bad_counts}")
    if isinstance(spec, str):
        name, _, value = spec.partition(":")
        if name.strip() != "temperature" or not value:
            raise ValueError(f"dataset_weights string must look like 'temperature:0.5', got {spec!r}")
        try:
            temp = float(value)
        except ValueError as exc:
            raise ValueError(f"dataset_weights temperature is not a number: {spec!r}") from exc
        if temp < 0:
            raise ValueError(f"dataset_weights temperature must be >= 0, got {temp}")
        raw = {d: (float(n) ** temp if n > 0 else 0.0) for d, n in counts.items()}
    elif isinstance(spec, Mapping):
        unknown = sorted(set(spec) - set(counts))
        missing = sorted(set(counts) - set(spec))
        if unknown:
            raise ValueError(f"dataset_weights names datasets not in the index: {unknown}; known: {sorted(counts)}")
        if missing:
            raise ValueError(f"dataset_weights lacks datasets present in the index: {missing} (give 0 to exclude)")
        raw = {d: float(w) for d, w in spec.items()}
        negative = {d: w for d, w in raw.items() if w < 0 or math.isnan(w)}
        if negative:
            raise ValueError(f"dataset_weights must be >= 0, got {negative}")
        raw = {d: (w if counts[d] > 0 else 0.0) for d, w in raw.items()}
    else:
        raise ValueError(f"dataset_weights must be None, 'temperature:T' or a dict, got {type(spec).__name__}")
    total = sum(raw.values())
    if total <= 0:
        raise ValueError(f"dataset_weights give every dataset zero weight: {raw}")
    return {d: w / total for d, w in raw.items()}


def repeat_factors(shares: Mapping[str, float], counts: Mapping[str, int], total: float) -> dict[str, float]:
    """Per-dataset expected copies per sample: ``r_d = p_d * total / n_d``.

    Args:
        shares: target shares ``p_d`` (from :func:`parse_dataset_weights`).
        counts: images per dataset ``n_d``.
        total: wanted stream length per pass (``sum_d n_d r_d == total``).
    """
    return {d: (p * total / counts[d] if counts[d] > 0 else 0.0) for d, p in shares.items()}


def draw_repeats(factor: float, rng: random.Random) -> int:
    """Stochastic rounding: ``floor(factor)`` plus one with probability ``frac(factor)``."""
    whole = int(factor)
    return whole + (1 if rng.random() < factor - whole else 0)


def expected_mixture(factors: Mapping[str, float], counts: Mapping[str, int]) -> dict[str, float]:
    """Shares the stream will have in expectation under ``factors`` (for docs, logs and tests)."""
    mass = {d: factors[d] * counts[d] for d in factors}
    total = sum(mass.values())
    return {d: m / total for d, m in mass.items()} if total > 0 else {}


def summarize_weights(factors: Mapping[str, float], counts: Mapping[str, int]) -> list[dict[str, Any]]:
    """Rows ``{dataset, count, repeat, share}`` sorted by dataset, for logging."""
    shares = expected_mixture(factors, counts)
    return [{"dataset": d, "count": int(counts[d]), "repeat": round(factors[d], 4),
             "share": round(shares.get(d, 0.0), 4)} for d in sorted(factors)]
