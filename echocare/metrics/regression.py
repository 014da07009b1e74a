"""Regression metrics (seed 003 §4.3, LVEF): MAE, RMSE, R² and Pearson r."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from echocare.metrics._common import as_array, check_finite, check_same_length

__all__ = ["mae", "pearson_r", "r2_score", "regression_report", "rmse"]

logger = logging.getLogger(__name__)


def _pair(y_true: Any, y_pred: Any) -> tuple[np.ndarray, np.ndarray]:
    yt = as_array(y_true, "y_true").reshape(-1)
    yp = as_array(y_pred, "y_pred").reshape(-1)
    check_same_length(yt, yp, "y_true", "y_pred")
    check_finite(yt, "y_true")
    check_finite(yp, "y_pred")
    return yt, yp


def mae(y_true: Any, y_pred: Any) -> float:
    """MAE = (1/N) sum_i |y_i - ŷ_i|."""
    yt, yp = _pair(y_true, y_pred)
    return float(np.mean(np.abs(yt - yp)))


def rmse(y_true: Any, y_pred: Any) -> float:
    """RMSE = sqrt((1/N) sum_i (y_i - ŷ_i)^2)."""
    yt, yp = _pair(y_true, y_pred)
    return float(np.sqrt(np.mean((yt - yp) ** 2)))


def r2_score(y_true: Any, y_pred: Any) -> float:
    """Coefficient of determination R² = 1 - sum_i (y_i - ŷ_i)^2 / sum_i (y_i - ȳ)^2.

    Raises:
        ValueError: If ``y_true`` is constant (R² undefined).
    """
    yt, yp = _pair(y_true, y_pred)
    ss_tot = float(np.sum((yt - yt.mean()) ** 2))
    if ss_tot == 0.0:
        raise ValueError("R² undefined: y_true is constant")
    return float(1.0 - np.sum((yt - yp) ** 2) / ss_tot)


def pearson_r(y_true: Any, y_pred: Any) -> float:
    """Pearson r = sum (y - ȳ)(ŷ - mean ŷ) / sqrt(sum (y - ȳ)^2 * sum (ŷ - mean ŷ)^2).

    Raises:
        ValueError: If either input is constant (r undefined).
    """
    yt, yp = _pair(y_true, y_pred)
    dt, dp = yt - yt.mean(), yp - yp.mean()
    den = float(np.sqrt(np.sum(dt ** 2) * np.sum(dp ** 2)))
    if den == 0.0:
        raise ValueError("Pearson r undefined: y_true or y_pred is constant")
    return float(np.clip(np.sum(dt * dp) / den, -1.0, 1.0))


def regression_report(y_true: Any, y_pred: Any) -> dict[str, float]:
    """``{"mae", "rmse", "r2", "pearson_r", "n"}``; undefined R²/r (constant input) are NaN."""
    yt, yp = _pair(y_true, y_pred)
    out = {"mae": mae(yt, yp), "rmse": rmse(yt, yp), "n": int(len(yt))}
    for name, fn in (("r2", r2_score), ("pearson_r", pearson_r)):
        try:
            out[name] = fn(yt, yp)
        except ValueError as err:
            logger.warning("regression_report: %s reported as NaN: %s", name, err)
            out[name] = float("nan")
    return out
