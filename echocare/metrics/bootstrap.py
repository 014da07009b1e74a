"""Percentile bootstrap confidence intervals by resampling cases."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np

from echocare.metrics._common import as_array

__all__ = ["bootstrap_ci", "bootstrap_indices"]

logger = logging.getLogger(__name__)


def bootstrap_indices(n_cases: int, n: int = 1000, seed: int = 0) -> np.ndarray:
    """Draw ``n`` bootstrap resamples of ``n_cases`` case indices (with replacement).

    Args:
        n_cases: Number of cases in the evaluated set.
        n: Number of resamples.
        seed: Seed of the numpy ``default_rng``; the same seed gives the same resamples.

    Returns:
        Integer array ``(n, n_cases)``.
    """
    if n_cases < 1:
        raise ValueError(f"bootstrap needs at least one case, got n_cases={n_cases}")
    if n < 1:
        raise ValueError(f"number of bootstrap resamples must be >= 1, got n={n}")
    rng = np.random.default_rng(seed)
    return rng.integers(0, n_cases, size=(n, n_cases))


def bootstrap_ci(
    metric_fn: Callable[..., float],
    *arrays: Any,
    n: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of ``metric_fn(*arrays)``.

    Each resample draws ``N`` cases with replacement (the same case indices for every array, so
    paired inputs such as labels and scores stay aligned), evaluates ``metric_fn`` on the resampled
    arrays and collects the values ``theta*_1..theta*_n``. The interval is

        (lo, hi) = (Q_{alpha/2}(theta*), Q_{1-alpha/2}(theta*))

    with ``Q_q`` the empirical ``q``-quantile (numpy linear interpolation). Resamples on which the
    metric is undefined (``metric_fn`` raises ``ValueError`` or returns NaN, e.g. an AUC on a resample
    holding a single class) are skipped and their count is logged at WARNING level.

    Args:
        metric_fn: Function of the arrays returning a float.
        *arrays: Arrays indexed by case along their first axis (numpy, torch or sequences).
        n: Number of bootstrap resamples.
        seed: Random seed; the interval is deterministic for a given seed.
        alpha: Miscoverage level; 0.05 gives a 95% interval.

    Returns:
        ``(lo, hi)`` as python floats.

    Raises:
        ValueError: If no arrays are given, their lengths differ, ``alpha`` is not in (0, 1), or the
            metric is undefined on every resample.
    """
    if not arrays:
        raise ValueError("bootstrap_ci needs at least one array to resample")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    arrs = [_to_object_array(a) if _is_ragged(a) else _to_np(a, i) for i, a in enumerate(arrays)]
    n_cases = len(arrs[0])
    for i, a in enumerate(arrs[1:], start=1):
        if len(a) != n_cases:
            raise ValueError(f"bootstrap_ci: arrays[{i}] has {len(a)} cases but arrays[0] has {n_cases}")
    values: list[float] = []
    n_undefined = 0
    for idx in bootstrap_indices(n_cases, n=n, seed=seed):
        try:
            value = float(metric_fn(*(a[idx] for a in arrs)))
        except ValueError:
            n_undefined += 1
            continue
        if np.isnan(value):
            n_undefined += 1
            continue
        values.append(value)
    if not values:
        raise ValueError(f"bootstrap_ci: metric {getattr(metric_fn, '__name__', metric_fn)!r} was undefined "
                         f"on all {n} resamples")
    if n_undefined:
        logger.warning("bootstrap_ci: metric %r undefined on %d of %d resamples (skipped)",
                       getattr(metric_fn, "__name__", metric_fn), n_undefined, n)
    lo, hi = np.percentile(np.asarray(values), [100.0 * alpha / 2.0, 100.0 * (1.0 - alpha / 2.0)])
    return float(lo), float(hi)


def _is_ragged(a: Any) -> bool:
    """True for python lists whose items have different lengths (e.g. per-image box lists)."""
    if not isinstance(a, (list, tuple)) or not a:
        return False
    try:
        np.asarray(a, dtype=np.float64)
    except (TypeError, ValueError):
        return True
    return False


def _to_object_array(items: list | tuple) -> np.ndarray:
    """A 1-D object array holding ``items`` as they are (ragged per-case entries)."""
    out = np.empty(len(items), dtype=object)
    for i, item in enumerate(items):
        out[i] = item
    return out


def _to_np(a: Any, i: int) -> np.ndarray:
    """Keep numeric arrays numeric (int labels stay int) for fancy indexing."""
    arr = as_array(a, f"arrays[{i}]", dtype=None)
    if arr.ndim == 0:
        raise ValueError(f"bootstrap_ci: arrays[{i}] is a scalar; expected one entry per case")
    return arr
