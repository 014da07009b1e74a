"""Group-aware, deterministic train/validation splits, k-fold and label-fraction subsampling.

Frames of one patient (or video, or case) must never straddle the train/validation boundary, or
validation scores leak. Every record carries a *group* key: taken from a CSV group column, or from
``group_regex`` applied to the record's path relative to the dataset root (first capture group if
any, else the whole match), or — as a fallback — the path itself (every file its own group).

All functions are pure and depend only on the group keys and a seed, never on the file order
given by the filesystem (keys are sorted before shuffling).

Stratification (classification): pass ``labels=`` (one class per record) and the hold-out split, the
k-fold and the label-fraction subsample are drawn per class, so every class with at least two groups
reaches validation and every class keeps at least one group in a label fraction. With groups, a
group's class is its most frequent label (ties: the smallest), and whole groups still move together.
"""

from __future__ import annotations

import logging
import random
import re
from collections import Counter
from collections.abc import Hashable, Sequence

from echocare.errors import DataError

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
        raise DataError(f"data.group_regex {group_regex!r} does not match {relpath!r}; every file needs a group")
    return match.group(1) if match.groups() else match.group(0)


def _shuffled_groups(groups: Sequence[str], seed: int) -> list[str]:
    unique = sorted(set(groups))
    random.Random(seed).shuffle(unique)
    return unique


def _strata(groups: Sequence[str], labels: Sequence[Hashable], indices: Sequence[int] | None = None
            ) -> dict[str, list[str]]:
    """Class → its groups (each group's class: its most frequent label among ``indices``), keys sorted."""
    if len(labels) != len(groups):
        raise ValueError(f"labels= has {len(labels)} entries for {len(groups)} records")
    votes: dict[str, Counter] = {}
    for i in (range(len(groups)) if indices is None else indices):
        votes.setdefault(groups[i], Counter())[str(labels[i])] += 1
    out: dict[str, list[str]] = {}
    for g, c in votes.items():
        top = max(c.values())
        out.setdefault(min(k for k, v in c.items() if v == top), []).append(g)
    return {k: out[k] for k in sorted(out)}


def _stratum_order(stratum_groups: Sequence[str], seed: int, label: str) -> list[str]:
    unique = sorted(set(stratum_groups))
    random.Random(f"{seed}/{label}").shuffle(unique)
    return unique


def split_groups(groups: Sequence[str], val_fraction: float, seed: int = 0,
                 labels: Sequence[Hashable] | None = None) -> tuple[list[int], list[int]]:
    """Split record indices into train / validation by group.

    Groups are shuffled with ``seed``; the first ``round(val_fraction * n_groups)`` groups (at least
    one when ``val_fraction > 0`` and there are >= 2 groups) form the validation set. With ``labels``,
    this is done per class: each class with >= 2 groups sends ``round(val_fraction * its groups)``
    (at least one, never all) to validation; a class with one group stays in training (logged).

    Args:
        groups: Group key of every record.
        val_fraction: Fraction of *groups* held out, in [0, 1).
        seed: Shuffle seed.
        labels: Class of every record (stratify), or None.

    Returns:
        ``(train_indices, val_indices)``, each sorted.

    Raises:
        ValueError: ``val_fraction`` out of range, or a validation set is requested from one group.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise DataError(f"data.val_fraction must be in [0, 1), got {val_fraction}")
    order = _shuffled_groups(groups, seed)
    if val_fraction == 0.0:
        return list(range(len(groups))), []
    if len(order) < 2:
        raise DataError(f"cannot hold out a validation set: all {len(groups)} records share one group "
                         f"({order[:1]}); check data.group_regex or give data.val_root")
    if labels is not None:
        val_groups: set[str] = set()
        for label, members in _strata(groups, labels).items():
            if len(members) < 2:
                logger.warning("class %s has a single group (%s): it cannot reach the validation set", label,
                               members[0])
                continue
            n = min(len(members) - 1, max(1, round(val_fraction * len(members))))
            val_groups.update(_stratum_order(members, seed, label)[:n])
        if not val_groups:
            raise DataError("cannot hold out a stratified validation set: no class has two groups")
    else:
        n_val = min(len(order) - 1, max(1, round(val_fraction * len(order))))
        val_groups = set(order[:n_val])
    train = [i for i, g in enumerate(groups) if g not in val_groups]
    val = [i for i, g in enumerate(groups) if g in val_groups]
    return train, val


def kfold_split(groups: Sequence[str], fold: int, num_folds: int, seed: int = 0,
                labels: Sequence[Hashable] | None = None) -> tuple[list[int], list[int]]:
    """Fold ``fold`` of a group k-fold: groups dealt round-robin (after a seeded shuffle) into folds.

    Every group lands in exactly one validation fold, so the union of the folds' validation sets is
    every record, and no group is ever in both train and validation. With ``labels`` the deal goes
    class by class (each class's groups shuffled, the round-robin continuing across classes), so
    every fold gets its share of every class.

    Returns:
        ``(train_indices, val_indices)``.

    Raises:
        ValueError: bad ``fold`` / ``num_folds`` or fewer groups than folds.
    """
    if num_folds < 2:
        raise DataError(f"data.num_folds must be >= 2, got {num_folds}")
    if not 0 <= fold < num_folds:
        raise DataError(f"data.fold must be in [0, {num_folds}), got {fold}")
    order = _shuffled_groups(groups, seed)
    if len(order) < num_folds:
        raise DataError(f"{num_folds} folds need at least {num_folds} groups, found {len(order)}")
    if labels is not None:
        order = [g for label, members in _strata(groups, labels).items()
                 for g in _stratum_order(members, seed, label)]
    fold_of = {g: i % num_folds for i, g in enumerate(order)}
    train = [i for i, g in enumerate(groups) if fold_of[g] != fold]
    val = [i for i, g in enumerate(groups) if fold_of[g] == fold]
    return train, val


def subsample_groups(indices: Sequence[int], groups: Sequence[str], fraction: float, seed: int = 0,
                     labels: Sequence[Hashable] | None = None) -> list[int]:
    """Keep about ``fraction`` of the training records, whole groups at a time (label efficiency).

    Groups are shuffled with ``seed`` and taken until the kept records reach ``fraction`` of the
    total (at least one group). Smaller fractions with the same seed give nested subsets. With
    ``labels`` this runs per class (``fraction`` of each class's records, at least one group of
    every class), still nested.

    Args:
        indices: Training record indices.
        groups: Group key of every record (indexed by record index).
        fraction: In (0, 1]; 1 keeps everything.
        seed: Subsampling seed.
        labels: Class of every record (indexed by record index; stratify), or None.

    Returns:
        Sorted kept indices.
    """
    if not 0.0 < fraction <= 1.0:
        raise DataError(f"label fraction must be in (0, 1], got {fraction}")
    if fraction == 1.0 or not indices:
        return sorted(indices)
    by_group: dict[str, list[int]] = {}
    for i in indices:
        by_group.setdefault(groups[i], []).append(i)
    if labels is None:
        strata = {"": _shuffled_groups(list(by_group), seed)}
    else:
        strata = {k: _stratum_order(v, seed, k) for k, v in _strata(groups, labels, indices).items()}
    kept: list[int] = []
    for order in strata.values():
        target = fraction * sum(len(by_group[g]) for g in order)
        taken: list[int] = []
        for g in order:
            if taken and len(taken) >= target:
                break
            taken.extend(by_group[g])
        kept.extend(taken)
    logger.info("label fraction %.3g: kept %d of %d records (%d groups)", fraction, len(kept), len(indices),
                len({groups[i] for i in kept}))
    return sorted(kept)


def train_val_split(groups: Sequence[str], val_fraction: float = 0.2, seed: int = 0, fold: int | None = None,
                    num_folds: int = 5, labels: Sequence[Hashable] | None = None) -> tuple[list[int], list[int]]:
    """Hold-out split (``fold is None``) or fold ``fold`` of a group k-fold, stratified by ``labels`` when
    given; see the two functions above."""
    if fold is None:
        return split_groups(groups, val_fraction, seed, labels)
    return kfold_split(groups, fold, num_folds, seed, labels)
