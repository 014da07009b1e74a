"""``PretrainStream``: the webdataset-shard stream of pretraining batches (decode, augment, mask, targets).

One pass of one (rank, worker) is a pure function of ``(seed, epoch, rank, worker)``:

    shards (shuffled by seed+epoch, same everywhere) -> split_by_node -> split_by_worker
      -> tar samples -> JSON parse + labels (bad ones skipped and counted)
      -> dataset repeat factors (weights) -> shuffle buffer          [all still undecoded bytes]
      -> fast-forward ``raw`` samples on resume (no decoding)
      -> decode grayscale (corrupt ones skipped and counted) -> batch
      -> augment + SimMIM masks with a generator seeded by (seed, epoch, rank, worker, batch index)

Use it through :func:`echocare.data.loader.make_pretrain_loader`, which adds exact resume.
Iterating the stream directly yields single samples of epoch ``stream.epoch``.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from PIL.Image import DecompressionBombError
from torch.utils.data import IterableDataset, get_worker_info

from echocare.data.masking import MaskGenerator
from echocare.data.sampling import (TAG_BATCH, TAG_REPEAT, TAG_RESAMPLE, TAG_SHUFFLE, derive_seed, draw_repeats,
                                    parse_dataset_weights, repeat_factors, shuffle_buffer, shuffle_shards,
                                    split_shards, summarize_weights)
from echocare.data.shardlist import expand_shards, locate_index, shard_entries
from echocare.data.shardcheck import SkipCounter, decode_gray, parse_meta, read_checked_shard
from echocare.data.transforms import PretrainAugment, to_unit_float

logger = logging.getLogger(__name__)

__all__ = ["Plan", "PretrainStream", "SkipCounter", "decode_gray", "finalize_batch", "parse_meta"]

IMAGE_EXTS = ("png", "jpg", "jpeg", "npy.zst")


def finalize_batch(batch: dict[str, Any]) -> dict[str, Any]:
    """uint8 image/mask from the workers -> float32 image in [0, 1] and float32 0/1 mask (in place)."""
    batch["image"] = to_unit_float(batch["image"])
    batch["mask"] = batch["mask"].float()
    return batch


@dataclass
class Plan:
    """What one pass should produce (set by the loader before workers start)."""

    epoch: int = 0
    rank: int = 0
    world_size: int = 1
    batch_size: int = 1
    drop_last: bool = False
    skip: dict[int, tuple[int, int]] = field(default_factory=dict)  # worker -> (raw samples, batches) done


class PretrainStream(IterableDataset):
    """Stream of augmented, masked, labeled grayscale images from webdataset shards.

    Args:
        shards: directory, path, glob, brace pattern, ``pipe:``/URL, or a list of these.
        ontology: object with ``len()`` and ``encode(paths, label_space)`` (e.g. ``echocare.load_ontology()``);
            ``None`` -> batches carry no ``targets``.
        img_size: output side (square).
        patch_size: model patch size ``p``; masks are ``(H/p, W/p)``.
        mask_patch_size: SimMIM masking block size in pixels.
        mask_ratio: fraction of masked blocks.
        augment: enable the random augmentations (flip, crop, jitter).
        seed: base seed of every random choice.
        shuffle_buffer: sample shuffle buffer per worker (undecoded bytes); ``<= 1`` disables it.
        resampled: draw shards with replacement forever; each epoch is ``epoch_length`` samples per rank.
        epoch_length: samples per rank per epoch (required when ``resampled``); when not resampled and
            ``dataset_weights`` is set, the wanted total per pass (default: the index total).
        dataset_weights: ``None``, ``"temperature:T"`` or ``{dataset: weight}`` (see sampling.py).
        shardshuffle: shuffle the shard order each epoch (non-resampled).
        rank: this process' rank; ``None`` -> ``torch.distributed`` when initialised, else 0.
        world_size: number of ranks; ``None`` -> ``torch.distributed`` when initialised, else 1.
        index: path to (or dict of) ``index.json`` when it is not next to the shards.
        verify: check each shard's sha256 against ``index.json`` before reading it (a mismatching shard
            is skipped whole, its samples counted under ``checksum-mismatch``).
        hflip_p, vflip_p, crop_p, crop_scale, crop_ratio, jitter_p, brightness, contrast, fit: augmentation
            and framing settings (see :class:`echocare.data.transforms.PretrainAugment`).

    Raises:
        ValueError / FileNotFoundError: for bad shard specs, geometry or weights (naming the culprit).
    """

    def __init__(self, shards: str | Sequence[str], ontology: Any = None, img_size: int = 256, patch_size: int = 4,
                 mask_patch_size: int = 32, mask_ratio: float = 0.5, augment: bool = True, seed: int = 0,
                 shuffle_buffer: int = 1000, resampled: bool = False, epoch_length: int | None = None,
                 dataset_weights: str | Mapping[str, float] | None = None, shardshuffle: bool = True,
                 rank: int | None = None, world_size: int | None = None, index: Any = None, verify: bool = False,
                 hflip_p: float = 0.5, vflip_p: float = 0.5, crop_p: float = 0.5,
                 crop_scale: Sequence[float] = (0.67, 1.0), crop_ratio: Sequence[float] = (3 / 4, 4 / 3),
                 jitter_p: float = 0.2, brightness: float = 0.2, contrast: float = 0.2, fit: str = "crop") -> None:
        super().__init__()
        self.urls = expand_shards(shards)
        self.index = locate_index(shards, self.urls, index)
        self.shard_entries = shard_entries(self.urls, self.index)
        self.shard_sizes = None if self.shard_entries is None else [int(e["count"]) for e in self.shard_entries]
        self._expected = dict(zip(self.urls, self.shard_entries)) if self.shard_entries is not None else {}
        self.verify = bool(verify)
        if self.verify and (self.shard_entries is None or not all(e.get("sha256") for e in self.shard_entries)):
            raise ValueError("data.verify needs an index.json that lists every shard's sha256 "
                             f"(shards: {self.urls[:2]}...)")
        self._warned_shards: set[str] = set()
        self.dataset_counts = {str(k): int(v) for k, v in (self.index or {}).get("datasets", {}).items()}
        self.ontology = ontology
        self.img_size, self.patch_size, self.seed = img_size, patch_size, int(seed)
        self.shuffle_buffer, self.shardshuffle = int(shuffle_buffer), bool(shardshuffle)
        self.resampled, self.epoch_length = bool(resampled), epoch_length
        self.rank, self.world_size = rank, world_size
        self.epoch = 0
        self.masker = MaskGenerator(img_size, patch_size, mask_patch_size, mask_ratio)
        self.augmenter = PretrainAugment(img_size, augment, hflip_p, vflip_p, crop_p, crop_scale, crop_ratio,
                                         jitter_p, brightness, contrast, fit)
        if resampled and (epoch_length is None or int(epoch_length) <= 0):
            raise ValueError(f"resampled=True needs a positive epoch_length (samples per rank), got {epoch_length}")
        if epoch_length is not None and int(epoch_length) <= 0:
            raise ValueError(f"epoch_length must be positive, got {epoch_length}")
        if epoch_length is not None and not resampled and dataset_weights is None:
            logger.warning("epoch_length=%s is ignored: it applies to resampled=True (samples per rank) or to "
                           "dataset_weights (samples per pass over all ranks)", epoch_length)
        self.factors: dict[str, float] | None = None
        shares = parse_dataset_weights(dataset_weights, self.dataset_counts)
        if shares is not None:
            natural = sum(self.dataset_counts.values())
            total = natural if resampled or epoch_length is None else int(epoch_length)
            self.factors = repeat_factors(shares, self.dataset_counts, total)
            logger.info("dataset weights %s: %s", dataset_weights, summarize_weights(self.factors, self.dataset_counts))
        self._check_ontology_hash()
        self._target_cache: dict[tuple, torch.Tensor] = {}

    # ------------------------------------------------------------------ setup helpers
    def _check_ontology_hash(self) -> None:
        built = (self.index or {}).get("ontology_hash")
        ours = getattr(self.ontology, "hash", None)
        if built and ours and built != ours:
            logger.warning("shards were built with ontology %s but the stream uses %s: unknown label paths will "
                           "be skipped and counted (reason 'bad_label')", built[:12], ours[:12])

    def resolve_world(self) -> tuple[int, int]:
        """(rank, world_size): explicit arguments, else ``torch.distributed``, else (0, 1)."""
        rank, world = self.rank, self.world_size
        dist = torch.distributed
        if (rank is None or world is None) and dist.is_available() and dist.is_initialized():
            rank = dist.get_rank() if rank is None else rank
            world = dist.get_world_size() if world is None else world
        rank, world = int(rank or 0), int(world or 1)
        if not 0 <= rank < world:
            raise ValueError(f"rank {rank} is outside world_size {world}")
        if not self.resampled and len(self.urls) < world:
            raise ValueError(f"{len(self.urls)} shards cannot be split over {world} ranks without leaving a rank "
                             "empty; write more shards or use resampled=True")
        return rank, world

    def rank_worker_samples(self, rank: int, world_size: int, num_workers: int, epoch: int) -> list[float] | None:
        """Samples per worker of one rank in a non-resampled epoch (expected values under weights);
        ``None`` when the index has no per-shard counts."""
        if self.shard_sizes is None:
            return None
        num_workers = max(1, num_workers)
        order = shuffle_shards(list(range(len(self.urls))), self.seed, epoch, self.shardshuffle)
        scale = 1.0
        if self.factors is not None:
            natural = sum(self.dataset_counts.values())
            scale = sum(self.factors[d] * n for d, n in self.dataset_counts.items()) / max(natural, 1)
        return [scale * sum(self.shard_sizes[i] for i in split_shards(order, rank, world_size, w, num_workers))
                for w in range(num_workers)]

    def num_samples(self, rank: int | None = None, world_size: int | None = None, epoch: int | None = None) -> int:
        """Samples one rank sees per epoch: ``epoch_length`` when resampled, else from ``index.json``
        (exact without weights, expected with weights; corrupt samples are not known in advance).

        Raises:
            TypeError: the count is unknown (no index.json with per-shard counts).
        """
        if self.resampled:
            return int(self.epoch_length)
        if rank is None or world_size is None:
            rank, world_size = self.resolve_world()
        per_worker = self.rank_worker_samples(rank, world_size, 1, self.epoch if epoch is None else epoch)
        if per_worker is None:
            raise TypeError("epoch length unknown: no index.json with per-shard counts for these shards")
        return int(round(sum(per_worker)))

    # ------------------------------------------------------------------ raw (undecoded) stream
    def _read_shard(self, url: str, counter: SkipCounter) -> Iterator[dict[str, Any]]:
        """Samples of one shard, checked against its ``index.json`` entry (see :func:`read_checked_shard`)."""
        yield from read_checked_shard(url, self._expected.get(url), counter, self.verify, self._warned_shards)

    def _targets(self, paths: list[str], space: list[str] | None) -> torch.Tensor | None:
        if self.ontology is None:
            return None
        key = (tuple(paths), None if space is None else tuple(space))
        hit = self._target_cache.get(key)
        if hit is None:
            if not paths and space is None:
                hit = torch.full((len(self.ontology),), -1.0)
            else:
                hit = torch.as_tensor(self.ontology.encode(paths, space), dtype=torch.float32)
            if len(self._target_cache) < 100_000:
                self._target_cache[key] = hit
        return hit

    def _parsed(self, sample: dict[str, Any], counter: SkipCounter) -> tuple | None:
        key = sample.get("__key__", "?")
        image_ext = next((e for e in IMAGE_EXTS if e in sample), None)
        if image_ext is None or "json" not in sample:
            counter.add("incomplete_sample", key, f"members {sorted(k for k in sample if not k.startswith('__'))}")
            return None
        try:
            meta = parse_meta(sample["json"])
        except ValueError as exc:  # json.JSONDecodeError and UnicodeDecodeError are ValueErrors
            counter.add("bad_json", key, exc)
            return None
        try:
            targets = self._targets(meta["paths"], meta.get("label_space"))
        except (KeyError, ValueError) as exc:
            counter.add("bad_label", key, exc)
            return None
        return key, meta["dataset"], sample[image_ext], targets

    def _raw_stream(self, epoch: int, rank: int, world: int, worker: int, num_workers: int,
                    counter: SkipCounter) -> Iterator[tuple]:
        """Undecoded ``(key, dataset, image_bytes, targets)`` after labels and repeat factors."""
        rng = random.Random(derive_seed(self.seed, epoch, rank, worker, TAG_REPEAT))
        if self.resampled:
            shards = self._resampled_shards(epoch, rank, worker)
        else:
            order = shuffle_shards(self.urls, self.seed, epoch, self.shardshuffle)
            shards = iter(split_shards(order, rank, world, worker, num_workers))
        barren = 0
        for url in shards:
            valid = 0
            for sample in self._read_shard(url, counter):
                item = self._parsed(sample, counter)
                if item is None:
                    continue
                valid += 1
                copies = 1
                if self.factors is not None:
                    factor = self.factors.get(item[1])
                    if factor is None:
                        counter.add("unknown_dataset", item[0], f"dataset {item[1]!r} is not in index.json")
                        continue
                    copies = draw_repeats(factor, rng)
                for _ in range(copies):
                    yield item
            barren = 0 if valid else barren + 1
            if self.resampled and barren > 2 * len(self.urls) + 10:
                raise RuntimeError(f"resampled stream read {barren} shards in a row without a valid sample; "
                                   f"check the shards {self.urls[:3]}...")

    def _resampled_shards(self, epoch: int, rank: int, worker: int) -> Iterator[str]:
        # Uniform over shards: a picked shard is read whole, so every sample is read at the same rate
        # (1 / #shards per pick) whatever its shard's size; weighting by size would double count.
        rng = random.Random(derive_seed(self.seed, epoch, rank, worker, TAG_RESAMPLE))
        while True:
            yield self.urls[rng.randrange(len(self.urls))]

    # ------------------------------------------------------------------ batches
    def _batch_sizes(self, plan: Plan, worker: int, num_workers: int) -> Iterator[int]:
        """Size of each batch this worker emits (resampled: a fixed schedule; else B until exhausted)."""
        if not self.resampled:
            while True:
                yield plan.batch_size
        length, b = int(self.epoch_length), plan.batch_size
        n_batches = length // b if plan.drop_last else math.ceil(length / b)
        for j in range(worker, n_batches, num_workers):  # global batch j of this rank goes to worker j % nw
            yield min(b, length - j * b)

    def iter_worker(self, plan: Plan, worker: int, num_workers: int) -> Iterator[dict[str, Any]]:
        """Batches of one worker, each with bookkeeping fields ``_worker, _raw, _batch, _stats``; ends with
        a ``{"_end": True, ...}`` marker carrying the trailing skip counts."""
        counter = SkipCounter(f" [rank {plan.rank} worker {worker}]")
        shuffle_rng = random.Random(derive_seed(self.seed, plan.epoch, plan.rank, worker, TAG_SHUFFLE))
        raw = self._raw_stream(plan.epoch, plan.rank, plan.world_size, worker, num_workers, counter)
        raw = shuffle_buffer(raw, self.shuffle_buffer, shuffle_rng)
        raw_pos, batch_idx = plan.skip.get(worker, (0, 0))
        for _ in range(raw_pos):  # exact fast-forward: undecoded bytes only
            if next(raw, None) is None:
                break
        counter.take()  # these skips were counted before the interruption
        counter.take_shards()
        sizes = self._batch_sizes(plan, worker, num_workers)
        for _ in range(batch_idx):
            next(sizes, None)
        for size in sizes:
            images, keys, datasets, targets = [], [], [], []
            while len(images) < size:
                item = next(raw, None)
                if item is None:
                    break
                raw_pos += 1
                try:
                    images.append(decode_gray(item[2], self.img_size))
                except DecompressionBombError as exc:
                    counter.add("decompression-bomb", item[0], exc)
                    continue
                except Exception as exc:  # noqa: BLE001 - any decode failure of one sample is a counted skip
                    counter.add("bad_image", item[0], f"{type(exc).__name__}: {exc}")
                    continue
                keys.append(item[0])
                datasets.append(item[1])
                targets.append(item[3])
            if not images or (len(images) < size and plan.drop_last):
                break
            batch = self.collate(images, keys, datasets, targets, plan, worker, batch_idx)
            batch_idx += 1
            batch.update(_worker=worker, _raw=raw_pos, _batch=batch_idx, _stats=counter.take(),
                         _shards=counter.take_shards())
            yield batch
        yield {"_end": True, "_worker": worker, "_raw": raw_pos, "_batch": batch_idx, "_stats": counter.take(),
               "_shards": counter.take_shards()}

    def collate(self, images: list[torch.Tensor], keys: list[str], datasets: list[str],
                targets: list[torch.Tensor | None], plan: Plan, worker: int, batch_idx: int) -> dict[str, Any]:
        """Augment + mask a decoded batch with its own seeded generator.

        Image and mask stay uint8 here (4x less to ship from worker processes; shipping float32
        batches cost ~0.4 ms per 256² image); :func:`finalize_batch` makes them float32 in the
        consuming process."""
        gen = torch.Generator().manual_seed(derive_seed(self.seed, plan.epoch, plan.rank, worker, batch_idx, TAG_BATCH))
        out: dict[str, Any] = {
            "image": self.augmenter(images, gen, dtype=torch.uint8),  # (B, 1, S, S) uint8
            "mask": self.masker(len(images), gen, dtype=torch.uint8),  # (B, S/p, S/p) uint8 {0, 1}
            "key": keys,
            "dataset": datasets,
        }
        if self.ontology is not None:
            out["targets"] = torch.stack(targets)  # (B, N) in {1, 0, -1}
        return out

    def __iter__(self) -> Iterator[dict[str, Any]]:
        """Single samples of epoch ``self.epoch`` (image (1,S,S), mask (S/p,S/p), targets (N,), key, dataset)."""
        info = get_worker_info()
        worker, num_workers = (info.id, info.num_workers) if info is not None else (0, 1)
        rank, world = self.resolve_world()
        plan = Plan(epoch=self.epoch, rank=rank, world_size=world, batch_size=1)
        for batch in self.iter_worker(plan, worker, num_workers):
            if batch.get("_end"):
                continue
            batch = finalize_batch(batch)
            yield {k: (v[0] if k in ("image", "mask", "targets", "key", "dataset") else v)
                   for k, v in batch.items() if not k.startswith("_")}

    def __repr__(self) -> str:
        return (f"PretrainStream({len(self.urls)} shards, img_size={self.img_size}, {self.masker!r}, "
                f"resampled={self.resampled}, epoch_length={self.epoch_length}, weighted={self.factors is not None})")
