"""Shared input handling for the metric functions: arrays in, validated numpy out."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

__all__ = ["as_array", "as_labels", "check_same_length", "check_finite"]


def as_array(x: Any, name: str, dtype: Any = np.float64) -> np.ndarray:
    """Convert a numpy array, torch tensor or nested sequence to a numpy array of ``dtype``.

    Args:
        x: The input values.
        name: Argument name used in error messages.
        dtype: Target numpy dtype.

    Returns:
        A numpy array (a copy when a conversion was needed).

    Raises:
        ValueError: If ``x`` is ``None`` or cannot be converted.
    """
    if x is None:
        raise ValueError(f"{name} is None; expected an array")
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        if x.dtype == torch.bfloat16:
            x = x.float()
        x = x.numpy()
    try:
        return np.asarray(x, dtype=dtype)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} could not be converted to a {np.dtype(dtype).name} array: {err}") from err


def as_labels(x: Any, name: str) -> np.ndarray:
    """Convert integer class labels to a 1-D int64 array, rejecting non-integral or negative values.

    Raises:
        ValueError: If the labels are not a 1-D sequence of non-negative integers.
    """
    arr = as_array(x, name, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D class labels, got shape {tuple(arr.shape)}")
    if not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)) or np.any(arr < 0):
        bad = arr[~(np.isfinite(arr) & (arr == np.round(arr)) & (arr >= 0))][:5]
        raise ValueError(f"{name} must hold non-negative integer class labels; offending values: {bad.tolist()}")
    return arr.astype(np.int64)


def check_same_length(a: np.ndarray, b: np.ndarray, name_a: str, name_b: str) -> None:
    """Raise ``ValueError`` unless ``a`` and ``b`` have the same first dimension (and are non-empty)."""
    if len(a) != len(b):
        raise ValueError(f"{name_a} has {len(a)} entries but {name_b} has {len(b)}")
    if len(a) == 0:
        raise ValueError(f"{name_a} and {name_b} are empty; a metric needs at least one case")


def check_finite(arr: np.ndarray, name: str) -> None:
    """Raise ``ValueError`` naming ``name`` if ``arr`` holds NaN or infinite values."""
    if not np.all(np.isfinite(arr)):
        n_bad = int((~np.isfinite(arr)).sum())
        raise ValueError(f"{name} contains {n_bad} non-finite value(s) (NaN/inf)")
