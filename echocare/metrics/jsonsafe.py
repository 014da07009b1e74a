"""Strict JSON for metric files: a non-finite number becomes ``null`` and its reason is recorded.

Convention (docs/metrics.md): :func:`strict_json` replaces every NaN/±inf float in a (nested) report by
``None`` and adds, at the top level, ``"nulls": {"<dotted.path>": "<reason>"}`` naming each replaced value
and why it is undefined (e.g. ``"auc": "undefined: the evaluated set holds a single class"``). Files
written with :func:`dumps_strict` are strict JSON (``allow_nan=False``): no bare ``NaN`` / ``Infinity``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["NULL_REASONS", "dumps_strict", "strict_json"]

#: Why a metric is undefined, by its key (the last component of its path); others get a generic reason.
NULL_REASONS: dict[str, str] = {
    "auc": "undefined: the evaluated set holds a single class",
    "r2": "undefined: the target is constant",
    "pearson_r": "undefined: a constant input",
    "map": "undefined: no class has a ground-truth box",
    "map50": "undefined: no class has a ground-truth box",
    "map75": "undefined: no class has a ground-truth box",
    "ctr_precision": "undefined: no cases",
    "p_value": "undefined: a model is not compared with itself",
    "loss": "not finite: the step's loss was NaN/inf (the step was skipped)",
    "grad_norm": "not finite: the gradient norm was NaN/inf",
}
_GENERIC = "undefined for this data (not a finite number)"


def _key_of(path: str) -> str:
    last = path.rsplit(".", 1)[-1]
    return path.split(".")[0] if last.isdigit() and "." in path else last


def _walk(obj: Any, path: str, nulls: dict[str, str]) -> Any:
    if isinstance(obj, Mapping):
        return {str(k): _walk(v, f"{path}.{k}" if path else str(k), nulls) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_walk(v, f"{path}.{i}", nulls) for i, v in enumerate(obj)]
    if isinstance(obj, np.ndarray):
        return _walk(obj.tolist(), path, nulls)
    if isinstance(obj, (np.generic,)):
        obj = obj.item()
    if hasattr(obj, "item") and callable(obj.item) and getattr(obj, "ndim", 1) == 0:  # 0-d torch tensor
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        key = _key_of(path)
        reason = NULL_REASONS.get(key, _GENERIC)
        if math.isinf(obj):
            reason = f"infinite ({'+' if obj > 0 else '-'}inf): {reason}"
        nulls[path] = reason
        return None
    return obj


def strict_json(obj: Any, reasons: Mapping[str, str] | None = None) -> Any:
    """Copy of ``obj`` with NaN/inf replaced by ``None``; a dict result gains a ``"nulls"`` map.

    Args:
        obj: A metric report (dicts, lists, numbers, numpy / 0-d torch scalars).
        reasons: Extra ``{path or key: reason}`` overriding :data:`NULL_REASONS` for this report.

    Returns:
        The JSON-safe copy. For a dict, ``out["nulls"]`` maps each replaced value's dotted path to its
        reason (absent when nothing was replaced; an existing ``"nulls"`` is merged).
    """
    nulls: dict[str, str] = {}
    out = _walk(obj, "", nulls)
    if reasons:
        for path in nulls:
            for key in (path, _key_of(path)):
                if key in reasons:
                    nulls[path] = str(reasons[key])
                    break
    if isinstance(out, dict) and nulls:
        merged = dict(out.get("nulls") or {})
        merged.update(nulls)
        out["nulls"] = merged
    return out


def dumps_strict(obj: Any, **kwargs: Any) -> str:
    """``json.dumps(strict_json(obj), allow_nan=False, **kwargs)``."""
    return json.dumps(strict_json(obj), allow_nan=False, **kwargs)
