"""Repeated-run summaries (seed 003 §4.4): mean ± std over runs, two-sample t-tests, label efficiency.

The report states every result as mean ± standard deviation over 20 independent runs and marks the
two-sided two-sample t-test p-value between the best model and each other one with asterisks
(* p < 0.05, ** p < 0.01, *** p < 0.001). Label-efficiency curves (Fig. 8) plot a metric against the
fraction of labelled training data.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from echocare.metrics._common import as_array

__all__ = [
    "compare_to_best",
    "comparison_table",
    "flatten_metrics",
    "format_mean_std",
    "label_efficiency_table",
    "mean_std",
    "plot_label_efficiency",
    "significance_stars",
    "summarize_runs",
    "ttest_pvalue",
]

logger = logging.getLogger(__name__)

Scale = float | Mapping[str, float]


def mean_std(values: Any, ddof: int = 1) -> dict[str, float]:
    """Mean and standard deviation over runs: mean = (1/n) sum x_r, std = sqrt(sum (x_r - mean)^2 / (n - ddof)).

    ``ddof=1`` (sample std) is the default; a single run has std 0. NaN runs are dropped and counted
    in ``n_nan`` (logged).

    Returns:
        ``{"mean", "std", "n", "n_nan"}``.
    """
    x = as_array(values, "values").reshape(-1)
    nan = ~np.isfinite(x)
    if nan.any():
        logger.warning("mean_std: %d of %d run values are NaN/inf and were dropped", int(nan.sum()), x.size)
    x = x[~nan]
    if x.size == 0:
        raise ValueError("mean_std: no finite run values")
    std = float(np.std(x, ddof=ddof)) if x.size > ddof else 0.0
    return {"mean": float(np.mean(x)), "std": std, "n": int(x.size), "n_nan": int(nan.sum())}


def format_mean_std(mean: float, std: float, scale: float = 1.0, digits: int = 3) -> str:
    """Format ``mean±std`` after multiplying by ``scale`` (100 for the report's percentages)."""
    return f"{mean * scale:.{digits}f}±{std * scale:.{digits}f}"


def flatten_metrics(report: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """Flatten a nested metric report into ``{"a.b.c": float}``, keeping numeric scalars only.

    Lists, strings, ``None`` and booleans (e.g. ``skipped_classes``, ``confusion_matrix``) are not
    run-level metrics and are left out.
    """
    flat: dict[str, float] = {}
    for key, value in report.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten_metrics(value, prefix=f"{name}."))
        elif isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_)):
            flat[name] = float(value)
    return flat


def summarize_runs(runs: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Mean ± std of every metric over repeated runs.

    Args:
        runs: One (possibly nested) metric report per run, e.g. ``classification_report`` outputs.

    Returns:
        ``{metric: {"mean", "std", "n", "n_nan", "values"}}`` over the flattened metric names. A metric
        missing from some runs is summarised over the runs that have it (its ``n`` shows how many;
        a WARNING names it).
    """
    if not runs:
        raise ValueError("summarize_runs: no runs given")
    flats = [flatten_metrics(r) for r in runs]
    names = sorted(set().union(*flats))
    out: dict[str, dict[str, Any]] = {}
    for name in names:
        values = [f[name] for f in flats if name in f]
        if len(values) < len(flats):
            logger.warning("summarize_runs: metric %r present in only %d of %d runs", name, len(values), len(flats))
        if not np.isfinite(values).any():
            logger.warning("summarize_runs: metric %r is NaN in every run; left out", name)
            continue
        out[name] = {**mean_std(values), "values": values}
    return out


def ttest_pvalue(values: Any, reference: Any, equal_var: bool = True) -> float:
    """Two-sided two-sample t-test p-value between run values and reference run values (scipy).

    Student's test by default (``equal_var=False`` gives Welch's). When both samples have zero
    variance the t statistic is undefined; p is then 1.0 for equal means and 0.0 otherwise.
    """
    a = as_array(values, "values").reshape(-1)
    b = as_array(reference, "reference").reshape(-1)
    if a.size < 2 or b.size < 2:
        raise ValueError(f"t-test needs >= 2 runs per sample, got {a.size} and {b.size}")
    if np.ptp(a) == 0 and np.ptp(b) == 0:
        return 1.0 if a[0] == b[0] else 0.0
    return float(stats.ttest_ind(a, b, equal_var=equal_var).pvalue)


def significance_stars(p: float) -> str:
    """``"***"`` for p < 0.001, ``"**"`` for p < 0.01, ``"*"`` for p < 0.05, else ``""``."""
    if math.isnan(p):
        return ""
    return "***" if p < 0.001 else "**" if p < 0.01 else "*" if p < 0.05 else ""


def compare_to_best(results: Mapping[str, Any], higher_is_better: bool = True,
                    equal_var: bool = True) -> dict[str, dict[str, Any]]:
    """Per model: mean/std over runs and the t-test p-value against the best model (by mean).

    Returns:
        ``{model: {"mean", "std", "n", "best", "p_value", "stars"}}``; the best model has p_value NaN.
    """
    if not results:
        raise ValueError("compare_to_best: no models given")
    summ = {m: mean_std(v) for m, v in results.items()}
    best = (max if higher_is_better else min)(summ, key=lambda m: summ[m]["mean"])
    out = {}
    for m, s in summ.items():
        p = float("nan") if m == best else ttest_pvalue(results[m], results[best], equal_var=equal_var)
        out[m] = {"mean": s["mean"], "std": s["std"], "n": s["n"], "best": m == best, "p_value": p,
                  "stars": significance_stars(p)}
    return out


def _scale(scale: Scale, metric: str) -> float:
    return float(scale.get(metric, 1.0)) if isinstance(scale, Mapping) else float(scale)


def _md(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def comparison_table(results: Mapping[str, Mapping[str, Any]], higher_is_better: Mapping[str, bool] | None = None,
                     scale: Scale = 1.0, digits: int = 3) -> str:
    """Markdown table, models × metrics, cells ``mean±std`` + significance stars vs the best (bold).

    Args:
        results: ``{model: {metric: run values}}``.
        higher_is_better: Per metric direction (default True; pass False for MAE, MSE, ...).
        scale: Multiplier for display, one value or per metric (e.g. 100 for percentages).
        digits: Decimals shown.
    """
    metrics = sorted({k for per_model in results.values() for k in per_model})
    cells = {m: {} for m in results}
    for metric in metrics:
        have = {m: v[metric] for m, v in results.items() if metric in v}
        cmp = compare_to_best(have, (higher_is_better or {}).get(metric, True))
        for m, c in cmp.items():
            text = format_mean_std(c["mean"], c["std"], _scale(scale, metric), digits)
            cells[m][metric] = f"**{text}**" if c["best"] else text + c["stars"]
    rows = [[m] + [cells[m].get(metric, "–") for metric in metrics] for m in results]
    return _md(["model"] + metrics, rows)


def _fraction_label(fraction: float) -> str:
    return f"{fraction * 100:g}%"


def label_efficiency_table(results: Mapping[float, Mapping[str, Any]], scale: Scale = 1.0,
                           digits: int = 3) -> str:
    """Markdown table of a label-efficiency study: rows = labelled fraction, cells = ``mean±std``.

    Args:
        results: ``{fraction in (0, 1]: {metric: run values}}``.
        scale: Display multiplier, one value or per metric.
        digits: Decimals shown.
    """
    if not results:
        raise ValueError("label_efficiency_table: no fractions given")
    fractions = sorted(results)
    for f in fractions:
        if not 0.0 < f <= 1.0:
            raise ValueError(f"label fraction must be in (0, 1], got {f}")
    metrics = sorted({k for per_f in results.values() for k in per_f})
    rows = []
    for f in fractions:
        row = [_fraction_label(f)]
        for metric in metrics:
            if metric in results[f]:
                s = mean_std(results[f][metric])
                row.append(format_mean_std(s["mean"], s["std"], _scale(scale, metric), digits))
            else:
                row.append("–")
        rows.append(row)
    return _md(["labelled fraction"] + metrics, rows)


def plot_label_efficiency(curves: Mapping[str, Mapping[float, Mapping[str, Any]]], path: str | Path,
                          scale: Scale = 1.0, title: str | None = None) -> Path:
    """PNG plot (matplotlib Agg canvas) of label-efficiency curves.

    One panel per metric; per model a line through the mean over runs with a ±std band.

    Args:
        curves: ``{model name: {fraction: {metric: run values}}}``; a single model is
            ``{"echocare": results}``.
        path: Output PNG path (parent directories are created).
        scale: Display multiplier, one value or per metric.
        title: Optional figure title.

    Returns:
        The written path.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not curves:
        raise ValueError("plot_label_efficiency: no curves given")
    metrics = sorted({k for res in curves.values() for per_f in res.values() for k in per_f})
    if not metrics:
        raise ValueError("plot_label_efficiency: curves hold no metrics")
    fig = Figure(figsize=(4.5 * len(metrics), 3.6))  # no pyplot: no global backend/state is touched
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(metrics), squeeze=False)
    for ax, metric in zip(axes[0], metrics, strict=True):
        sc = _scale(scale, metric)
        for name, res in curves.items():
            fr = sorted(f for f in res if metric in res[f])
            if not fr:
                continue
            s = [mean_std(res[f][metric]) for f in fr]
            x = np.asarray(fr) * 100.0
            mean = np.asarray([v["mean"] for v in s]) * sc
            std = np.asarray([v["std"] for v in s]) * sc
            ax.plot(x, mean, marker="o", label=name)
            ax.fill_between(x, mean - std, mean + std, alpha=0.2)
        ax.set_xlabel("labelled training data (%)")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    return out
