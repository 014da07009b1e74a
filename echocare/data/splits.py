"""Group-aware, deterministic train/validation splits, k-fold and label-fraction subsampling.

Frames of one patient (or video, or case) must never straddle the train/validation boundary, or
validation scores leak. Every record carries a *group* key: taken from a CSV group column, or from
``group_regex`` applied to the record's path relative to the dataset root (first capture group if
any, else the whole match), or — as a fallback — the path itself (every file its own group).

All functions are pure and depend only on the group keys and a seed, never on the file order
given by the filesystem (keys are sorted before shuffling).
"""

from __future__ import annotations

import logging
import random
import re
from collections.abc import Sequence

logger = logging.getLogger(__name__)

__all__ = ["group_key", "kfold_split", "split_groups", "subsample_groups", "train_val_split"]


def group_key(relpath: str, group_regex: str | None = None, explicit: str | None = None) -> str:
    """The split group of one record.

    Args:
        relpath: Path of the record relative to the dataset root (``/`` separators).
        group_regex: Regex searched in ``relpath``; its first capture group (or the whole match) is
            the group. ``None`` means every record is its own group unless ``explicit`` is given.
        explicit: A group value from the annotation (e.g. a CSV ``patient`` column); wins when set.

    Returns:
        The group key.

    Raises:
        ValueError: ``group_regex`` does not match ``relpath`` (naming both).
    """
    if explicit is not None and str(explicit).strip() != "":
        return str(explicit).strip()
    if not group_regex:
        return relpath
    match = re.search(group_regex, relpath)
    if match is None:
        raise ValueError(f"data.group_regex {group_regex!r} does not match {relpath!r}; every file needs a group")
    return match.group(1) if match.groups() else match.group(0)


def _shuffled_groups(groups: Sequence[str], seed: int) -> list[str]:
    unique = sorted(set(groups))
    random.Random(seed).shuffle(unique)
    return unique


def split_groups(groups: Sequence[str], val_fraction: float, seed: int = 0) -> tuple[list[int], list[int]]:
    """Split record indices into train / validation by group.

    Groups are shuffled with ``seed``; the first ``round(val_fraction * n_groups)`` groups (at least
    one when ``val_fraction > 0`` and there are >= 2 groups) form the validation set.

    Args:
        groups: Group key of every record.
        val_fraction: Fraction of *groups* held out, in [0, 1).
        seed: Shuffle seed.

    Returns:
        ``(train_indices, val_indices)``, each sorted.

    Raises:
        ValueError: ``val_fraction`` out of range, or a validation set is requested from one group.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"data.val_fraction must be in [0, 1), got {val_fraction}")
    order = _shuffled_groups(groups, seed)
    if val_fraction == 0.0:
        return list(range(len(groups))), []
    if len(order) < 2:
        raise ValueError(f"cannot hold out a validation set: all {len(groups)} records share one group "
                         f"({order[:1]}); check data.group_regex or give data.val_root")
    n_val = min(len(order) - 1, max(1, round(val_fraction * len(order))))
    val_groups = set(order[:n_val])
    train = [i for i, g in enumerate(groups) if g not in val_groups]
    val = [i for i, g in enumerate(groups) if g in val_groups]
    return train, val


def kfold_split(groups: Sequence[str], fold: int, num_folds: int, seed: int = 0) -> tuple[list[int], list[int]]:
    """Fold ``fold`` of a group k-fold: groups dealt round-robin (after a seeded shuffle) into folds.

    Every group lands in exactly one validation fold, so the union of the folds' validation sets is
    every record, and no group is ever in both train and validation.

    Returns:
        ``(train_indices, val_indices)``.

    Raises:
        ValueError: bad ``fold`` / ``num_folds`` or fewer groups than folds.
    """
    if num_folds < 2:
        raise ValueError(f"data.num_folds must be >= 2, got {num_folds}")
    if not 0 <= fold < num_folds:
        raise ValueError(f"data.fold must be in [0, {num_folds}), got {fold}")
    order = _shuffled_groups(groups, seed)
    if len(order) < num_folds:
        raise ValueError(f"{num_folds} folds need at least {num_folds} groups, found {len(order)}")
    fold_of = {g: i % num_folds for i, g in enumerate(order)}
    train = [i for i, g in enumerate(groups) if fold_of[g] != fold]
    val = [i for i, g in enumerate(groups) if fold_of[g] == fold]
    return train, val


def subsample_groups(indices: Sequence[int], groups: Sequence[str], fraction: float, seed: int = 0) -> list[int]:
    """Keep about ``fraction`` of the training records, whole groups at a time (label efficiency).

    Groups are shuffled with ``seed`` and taken until the kept records reach ``fraction`` of the
    total (at least one group). Smaller fractions with the same seed give nested subsets.

    Args:
        indices: Training record indices.
        groups: Group key of every record (indexed by record index).
        fraction: In (0, 1]; 1 keeps everything.
        seed: Subsampling seed.

    Returns:
        Sorted kept indices.
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"label fraction must be in (0, 1], got {fraction}")
    if fraction == 1.0 or not indices:
        return sorted(indices)
    by_group: dict[str, list[int]] = {}
    for i in indices:
        by_group.setdefault(groups[i], []).append(i)
    target = fraction * len(indices)
    kept: list[int] = []
    for g in _shuffled_groups(list(by_group), seed):
        if kept and len(kept) >= target:
            break
        kept.extend(by_group[g])
    logger.info("label fraction %.3g: kept %d of %d records (%d groups)", fraction, len(kept), len(indices),
                len({groups[i] for i in kept}))
    return sorted(kept)


def train_val_split(groups: Sequence[str], val_fraction: float = 0.2, seed: int = 0, fold: int | None = None,
                    num_folds: int = 5) -> tuple[list[int], list[int]]:
    """Hold-out split (``fold is None``) or fold ``fold`` of a group k-fold; see the two functions above."""
    if fold is None:
        return split_groups(groups, val_fraction, seed)
    return kfold_split(groups, fold, num_folds, seed)
