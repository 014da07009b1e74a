"""Landmark localisation metrics (seed 003 §4.3): MSE, mean radial error and SDR(τ).

Coordinates are arrays ``(..., 2)`` (any leading shape, e.g. ``(N, K, 2)`` for N images with K
landmarks), in pixels. ``spacing`` converts pixel offsets to physical units before the distance is
taken: a scalar for square pixels or one value per coordinate column, in the same order as the
coordinates (``(sx, sy)`` for ``(x, y)`` points), or an ``(N, 2)`` array of per-image spacings when
the coordinates are ``(N, K, 2)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from echocare.metrics._common import as_array, check_finite

__all__ = ["DEFAULT_SDR_RADII", "landmark_mse", "landmark_report", "mean_radial_error",
           "radial_errors", "success_detection_rate"]

DEFAULT_SDR_RADII: tuple[float, ...] = (2.0, 4.0, 10.0)


def radial_errors(pred: Any, gt: Any, spacing: Any = None) -> np.ndarray:
    """Euclidean distance ||p_i - g_i||_2 of every landmark, shape = coordinates' leading shape.

    Raises:
        ValueError: On shape mismatch, a last axis other than 2, non-finite coordinates or a bad spacing.
    """
    p, g = as_array(pred, "pred"), as_array(gt, "gt")
    if p.shape != g.shape:
        raise ValueError(f"pred shape {tuple(p.shape)} != gt shape {tuple(g.shape)}")
    if p.ndim < 1 or p.shape[-1] != 2 or p.size == 0:
        raise ValueError(f"landmarks must be non-empty (..., 2) coordinates, got shape {tuple(p.shape)}")
    check_finite(p, "pred")
    check_finite(g, "gt")
    diff = p - g
    if spacing is not None:
        s = as_array(spacing, "spacing")
        if s.ndim == 2:  # per-image spacing (N, 2) for (N, K, 2) coordinates
            if p.ndim != 3 or s.shape != (p.shape[0], 2):
                raise ValueError(f"per-image spacing must be (N, 2) for (N, K, 2) landmarks; got spacing "
                                 f"{tuple(s.shape)}, landmarks {tuple(p.shape)}")
            s = s[:, None, :]
        elif s.shape not in ((), (1,), (2,)):
            raise ValueError(f"spacing must be a scalar, (2,) or (N, 2); got shape {tuple(s.shape)}")
        if np.any(~np.isfinite(s)) or np.any(s <= 0):
            raise ValueError(f"spacing must be finite and > 0, got {s.ravel()[:4].tolist()}")
        diff = diff * s
    return np.sqrt((diff ** 2).sum(axis=-1))


def landmark_mse(pred: Any, gt: Any, spacing: Any = None) -> float:
    """MSE = (1/N) sum_i ||p_i - g_i||_2^2 over all N landmarks (squared pixels, or squared mm)."""
    return float(np.mean(radial_errors(pred, gt, spacing) ** 2))


def mean_radial_error(pred: Any, gt: Any, spacing: Any = None) -> float:
    """MRE = (1/N) sum_i ||p_i - g_i||_2 over all N landmarks."""
    return float(np.mean(radial_errors(pred, gt, spacing)))


def success_detection_rate(pred: Any, gt: Any, radii: Sequence[float] = DEFAULT_SDR_RADII,
                           spacing: Any = None) -> dict[float, float]:
    """SDR(τ) = (1/N) sum_i I(||p_i - g_i||_2 <= τ) for each radius τ (pixels, or mm with spacing).

    Returns:
        ``{τ: fraction of landmarks within τ}``.
    """
    err = radial_errors(pred, gt, spacing)
    out = {}
    for r in radii:
        if not np.isfinite(r) or r < 0:
            raise ValueError(f"SDR radius must be finite and >= 0, got {r}")
        out[float(r)] = float(np.mean(err <= r))
    return out


def landmark_report(pred: Any, gt: Any, radii: Sequence[float] = DEFAULT_SDR_RADII,
                    spacing: Any = None, landmark_names: Sequence[str] | None = None) -> dict[str, Any]:
    """MSE, MRE and SDR@radii over all landmarks, plus the MRE of each landmark for ``(N, K, 2)`` input.

    Hidden landmarks: for ``(N, K, 2)`` input, a ground-truth point with NaN coordinates is hidden (not
    annotated / not visible); it is left out of every statistic, and each landmark's MRE is taken over
    the images where it is visible (NaN for a landmark hidden in every image).

    Returns:
        ``{"mse", "mre", "sdr": {"2": ..}, "n_landmarks", "unit", "per_landmark_mre"}`` (+ ``"n_hidden"``
        when some are hidden); ``n_landmarks`` counts the scored (visible) ones; SDR keys are the radii
        formatted with ``:g`` so the dict stays JSON-friendly.
    """
    p, g = as_array(pred, "pred"), as_array(gt, "gt")
    visible = np.isfinite(g).all(axis=-1) if g.ndim == 3 and p.shape == g.shape else None
    if visible is not None and not visible.all():
        if not visible.any():
            raise ValueError("every ground-truth landmark is hidden (NaN); nothing to score")
        pv, gv = p[visible][:, None, :], g[visible][:, None, :]  # (M, 1, 2): one visible point per row
        sv = _visible_spacing(spacing, visible)
        full = np.full(visible.shape, np.nan)
        full[visible] = radial_errors(pv, gv, sv)[:, 0]
        err, scored = full, full[visible]
        sdr = success_detection_rate(pv, gv, radii, sv)
    else:
        err = radial_errors(p, g, spacing)
        scored = err
        sdr = success_detection_rate(p, g, radii, spacing)
    report: dict[str, Any] = {
        "mse": float(np.mean(scored ** 2)),
        "mre": float(np.mean(scored)),
        "sdr": {f"{float(r):g}": v for r, v in sdr.items()},
        "n_landmarks": int(scored.size),
        "unit": "px" if spacing is None else "spacing unit (e.g. mm)",
    }
    if err.ndim == 2:
        k = err.shape[1]
        names = [str(i) for i in range(k)] if landmark_names is None else [str(n) for n in landmark_names]
        if len(names) != k:
            raise ValueError(f"landmark_names has {len(names)} entries but there are {k} landmarks")
        seen = np.isfinite(err)
        per = [float(err[seen[:, j], j].mean()) if seen[:, j].any() else float("nan") for j in range(k)]
        report["per_landmark_mre"] = dict(zip(names, per, strict=True))
        if not seen.all():
            report["n_hidden"] = int((~seen).sum())
    return report


def _visible_spacing(spacing: Any, visible: np.ndarray) -> Any:
    """Spacing for the flattened visible points: a per-image (N, 2) spacing repeated per visible point."""
    if spacing is None:
        return None
    s = as_array(spacing, "spacing")
    if s.ndim != 2:
        return spacing
    if s.shape != (visible.shape[0], 2):
        raise ValueError(f"per-image spacing must be (N, 2) for (N, K, 2) landmarks; got {tuple(s.shape)}")
    return np.repeat(s, visible.sum(axis=1), axis=0)  # (M, 2), rows in the order of p[visible]
