"""Classification metrics (seed 003 §4.3): ACC, precision, recall, specificity, F1, AUC, Youden.

Conventions used throughout:

* ``y_true`` / ``y_pred`` are integer class labels ``0..K-1``; ``scores`` are positive-class scores
  ``(N,)`` for binary tasks, ``probs`` are class probabilities ``(N, K)``.
* ``average="binary"`` scores class 1 as the positive class (the thyroid / false-positive tasks);
  ``average="macro"`` is the unweighted mean over classes (BI-RADS, focal liver lesions).
* A ratio with a zero denominator (e.g. precision of a class that is never predicted) is 0.0.
* In macro averages a class that appears in neither ``y_true`` nor ``y_pred`` has no defined score;
  it is skipped and named in a WARNING log line.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from scipy.stats import rankdata

from echocare.metrics._common import as_array, as_labels, check_finite, check_same_length
from echocare.metrics.bootstrap import bootstrap_ci

__all__ = [
    "accuracy",
    "binary_auc",
    "classification_report",
    "confusion_matrix",
    "f1_score",
    "per_class_scores",
    "precision",
    "recall",
    "roc_auc",
    "roc_auc_per_class",
    "sensitivity",
    "specificity",
    "youden_threshold",
]

logger = logging.getLogger(__name__)

_AVERAGES = ("binary", "macro")


def _labels_pair(y_true: Any, y_pred: Any) -> tuple[np.ndarray, np.ndarray]:
    yt, yp = as_labels(y_true, "y_true"), as_labels(y_pred, "y_pred")
    check_same_length(yt, yp, "y_true", "y_pred")
    return yt, yp


def confusion_matrix(y_true: Any, y_pred: Any, num_classes: int | None = None) -> np.ndarray:
    """Confusion matrix ``C[i, j]`` = number of cases with true class ``i`` predicted as ``j``.

    Args:
        y_true: True labels ``(N,)``.
        y_pred: Predicted labels ``(N,)``.
        num_classes: ``K``; inferred as ``max(label) + 1`` when ``None``.

    Returns:
        int64 array ``(K, K)``.
    """
    yt, yp = _labels_pair(y_true, y_pred)
    k = int(max(yt.max(), yp.max())) + 1 if num_classes is None else int(num_classes)
    if yt.max() >= k or yp.max() >= k:
        raise ValueError(f"labels must be < num_classes={k}; got max y_true={yt.max()}, y_pred={yp.max()}")
    return np.bincount(yt * k + yp, minlength=k * k).reshape(k, k).astype(np.int64)


def accuracy(y_true: Any, y_pred: Any) -> float:
    """ACC = (TP + TN) / (TP + TN + FP + FN) = fraction of cases whose predicted label is correct."""
    yt, yp = _labels_pair(y_true, y_pred)
    return float(np.mean(yt == yp))


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    return np.divide(num, den, out=np.zeros_like(num, dtype=np.float64), where=den > 0)


def per_class_scores(cm: np.ndarray) -> dict[str, np.ndarray]:
    """One-vs-rest precision, recall, specificity, F1 and support per class from a confusion matrix.

    precision_c = TP/(TP+FP); recall_c = TP/(TP+FN); specificity_c = TN/(TN+FP);
    F1_c = 2 * precision_c * recall_c / (precision_c + recall_c); zero denominators give 0.
    ``present`` marks classes occurring in y_true or y_pred.
    """
    cm = cm.astype(np.float64)
    tp = np.diag(cm)
    fp = cm.sum(axis=0) - tp
    fn = cm.sum(axis=1) - tp
    tn = cm.sum() - tp - fp - fn
    prec, rec = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
    return {
        "precision": prec,
        "recall": rec,
        "specificity": _ratio(tn, tn + fp),
        "f1": _ratio(2 * prec * rec, prec + rec),
        "support": cm.sum(axis=1),
        "present": (tp + fp + fn) > 0,
    }


def _average(name: str, y_true: Any, y_pred: Any, average: str, num_classes: int | None,
             warn: bool = True) -> float:
    if average not in _AVERAGES:
        raise ValueError(f"average must be one of {_AVERAGES}, got {average!r}")
    if average == "binary" and num_classes is None:  # stays 2-class even if only one label occurs
        num_classes = max(2, int(max(np.max(as_labels(y_true, "y_true")), np.max(as_labels(y_pred, "y_pred")))) + 1)
    cm = confusion_matrix(y_true, y_pred, num_classes)
    scores = per_class_scores(cm)
    if average == "binary":
        if cm.shape[0] != 2:
            raise ValueError(f"average='binary' needs 2 classes, got {cm.shape[0]}; use average='macro'")
        return float(scores[name][1])
    present = scores["present"]
    if warn and not present.all():
        logger.warning("%s: classes %s absent from y_true and y_pred; skipped in the macro average",
                       name, np.flatnonzero(~present).tolist())
    return float(scores[name][present].mean())


def precision(y_true: Any, y_pred: Any, average: str = "binary", num_classes: int | None = None) -> float:
    """Precision = TP / (TP + FP); ``macro`` averages the one-vs-rest value over classes."""
    return _average("precision", y_true, y_pred, average, num_classes)


def recall(y_true: Any, y_pred: Any, average: str = "binary", num_classes: int | None = None) -> float:
    """Recall (sensitivity) = TP / (TP + FN); ``macro`` averages over classes."""
    return _average("recall", y_true, y_pred, average, num_classes)


sensitivity = recall


def specificity(y_true: Any, y_pred: Any, average: str = "binary", num_classes: int | None = None) -> float:
    """Specificity = TN / (TN + FP); ``macro`` averages the one-vs-rest value over classes."""
    return _average("specificity", y_true, y_pred, average, num_classes)


def f1_score(y_true: Any, y_pred: Any, average: str = "macro", num_classes: int | None = None) -> float:
    """F1 = 2 * Precision * Recall / (Precision + Recall).

    ``average="macro"`` (macro-F1) is the unweighted mean of the per-class F1 values;
    ``average="binary"`` is the F1 of class 1.
    """
    return _average("f1", y_true, y_pred, average, num_classes)


def _check_binary(yt: np.ndarray, s: np.ndarray, fn: str) -> None:
    """Checks shared by the binary metrics: same length, finite scores, labels 0/1 (``fn`` names the caller)."""
    check_same_length(yt, s, "y_true", "scores")
    check_finite(s, "scores")
    if yt.max() > 1:
        raise ValueError(f"{fn}: y_true must be 0/1, got label {int(yt.max())}")


def binary_auc(y_true: Any, scores: Any) -> float:
    """Area under the ROC curve of a binary task (Mann-Whitney form, seed 003 Table 2).

    AUC = (1 / (m n)) * sum_i sum_j [ I(p_i > p_j) + 0.5 * I(p_i = p_j) ],
    ``i`` over the ``m`` positives and ``j`` over the ``n`` negatives. The tie term makes it equal to
    the trapezoidal area under the empirical ROC curve; without ties it equals the report's formula.
    Computed from average ranks in O(N log N).

    Raises:
        ValueError: If ``y_true`` is not 0/1 or holds a single class (AUC undefined).
    """
    yt = as_labels(y_true, "y_true")
    s = as_array(scores, "scores")
    if s.ndim != 1:
        raise ValueError(f"binary_auc: scores must be 1-D, got shape {tuple(s.shape)}")
    _check_binary(yt, s, "binary_auc")
    m = int(yt.sum())
    n = len(yt) - m
    if m == 0 or n == 0:
        raise ValueError(f"AUC undefined: y_true holds only class {int(yt[0])} ({len(yt)} cases)")
    ranks = rankdata(s)  # average ranks for ties
    return float((ranks[yt == 1].sum() - m * (m + 1) / 2.0) / (m * n))


def roc_auc_per_class(y_true: Any, probs: Any) -> tuple[dict[int, float], list[int]]:
    """One-vs-rest AUC of every class ``c`` (class ``c`` positive, the rest negative, scored by probs[:, c]).

    Returns:
        ``(per_class, skipped)``: AUC per class index, and the classes absent from ``y_true`` (their
        AUC is undefined; they are skipped). A class that is the only one present is skipped too.
    """
    yt = as_labels(y_true, "y_true")
    p = as_array(probs, "probs")
    if p.ndim != 2:
        raise ValueError(f"probs must be (N, K), got shape {tuple(p.shape)}")
    check_same_length(yt, p, "y_true", "probs")
    if yt.max() >= p.shape[1]:
        raise ValueError(f"y_true has label {int(yt.max())} but probs has only {p.shape[1]} columns")
    per_class: dict[int, float] = {}
    skipped: list[int] = []
    for c in range(p.shape[1]):
        pos = yt == c
        if not pos.any() or pos.all():
            skipped.append(c)
            continue
        per_class[c] = binary_auc(pos.astype(np.int64), p[:, c])
    return per_class, skipped


def roc_auc(y_true: Any, scores: Any) -> float:
    """AUC: binary for ``(N,)`` scores or ``(N, 2)`` probabilities, one-vs-rest macro for ``(N, K>2)``.

    Macro AUC = mean over classes present in ``y_true`` of the one-vs-rest binary AUC; classes absent
    from ``y_true`` are skipped and named in a WARNING log line.
    """
    s = as_array(scores, "scores")
    if s.ndim == 2 and s.shape[1] == 2:
        s = s[:, 1]
    if s.ndim == 1:
        return binary_auc(y_true, s)
    per_class, skipped = roc_auc_per_class(y_true, s)
    if skipped:
        logger.warning("roc_auc: classes %s absent from y_true (AUC undefined); skipped in the macro AUC",
                       skipped)
    if not per_class:
        raise ValueError("AUC undefined: fewer than two classes present in y_true")
    return float(np.mean(list(per_class.values())))


def youden_threshold(y_true: Any, scores: Any) -> dict[str, float]:
    """ROC cut-off maximising the Youden index J = sensitivity + specificity - 1 (seed 003 §4.4).

    A case is predicted positive when ``score >= threshold``; candidate thresholds are the distinct
    scores. Ties in J are broken towards the highest threshold (the most specific cut-off).

    Returns:
        ``{"threshold", "youden_index", "sensitivity", "specificity", "accuracy"}`` at the cut-off.
    """
    yt = as_labels(y_true, "y_true")
    s = as_array(scores, "scores")
    if s.ndim == 2 and s.shape[1] == 2:
        s = s[:, 1]
    if s.ndim != 1:
        raise ValueError(f"youden_threshold needs binary scores (N,) or (N, 2), got shape {tuple(s.shape)}")
    _check_binary(yt, s, "youden_threshold")
    m, n = int(yt.sum()), int((yt == 0).sum())
    if m == 0 or n == 0:
        raise ValueError("Youden threshold undefined: y_true holds a single class")
    order = np.argsort(-s, kind="stable")
    s_sorted, y_sorted = s[order], yt[order]
    tp = np.cumsum(y_sorted)  # positives with score >= s_sorted[i]
    fp = np.cumsum(1 - y_sorted)
    last = np.r_[np.flatnonzero(np.diff(s_sorted) != 0), len(s_sorted) - 1]  # end of each distinct score
    sens = tp[last] / m
    spec = 1.0 - fp[last] / n
    j_num = tp[last] * n - fp[last] * m  # J * m * n in exact integers, so ties are exact
    best = int(np.argmax(j_num))  # first max = highest threshold
    j = j_num / (m * n)
    acc = (tp[last][best] + (n - fp[last][best])) / (m + n)
    return {
        "threshold": float(s_sorted[last][best]),
        "youden_index": float(j[best]),
        "sensitivity": float(sens[best]),
        "specificity": float(spec[best]),
        "accuracy": float(acc),
    }


def _predict(p: np.ndarray) -> np.ndarray:
    """Predicted labels: argmax of (N, K) probabilities, or ``score >= 0.5`` for binary (N,) scores."""
    return (p >= 0.5).astype(np.int64) if p.ndim == 1 else np.argmax(p, axis=1)


def _auc_quiet(yt: np.ndarray, p: np.ndarray) -> float:
    if p.ndim == 1:
        return binary_auc(yt, p)
    per_class, _ = roc_auc_per_class(yt, p)
    if not per_class:
        raise ValueError("AUC undefined: fewer than two classes present")
    return float(np.mean(list(per_class.values())))


def classification_report(
    y_true: Any,
    probs: Any,
    ci: bool = True,
    n_bootstrap: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    class_names: list[str] | None = None,
) -> dict[str, Any]:
    """All classification metrics of seed 003 §4.3-4.4 for one evaluation set.

    Predictions are ``argmax(probs)`` (or ``score >= 0.5`` for binary ``(N,)`` scores). For a binary
    task (K = 2) ``precision``, ``recall``/``sensitivity``, ``specificity`` and ``f1`` score class 1
    and a ``youden`` entry gives the ROC cut-off maximising sens + spec - 1 with ACC/sens/spec there;
    for K > 2 they are macro averages and ``f1 == macro_f1``. ``auc`` is binary or one-vs-rest macro
    (classes absent from ``y_true`` skipped, listed in ``auc_skipped_classes``).

    Args:
        y_true: True labels ``(N,)``.
        probs: Probabilities ``(N, K)`` or binary positive-class scores ``(N,)``.
        ci: Add percentile bootstrap intervals (resampling cases) under ``"ci"``.
        n_bootstrap: Number of bootstrap resamples.
        seed: Bootstrap seed.
        alpha: 1 - confidence level.
        class_names: Optional names for the ``per_class`` entries (default ``"0".."K-1"``).

    Returns:
        Dict of python floats / lists / dicts (JSON-serialisable).
    """
    yt = as_labels(y_true, "y_true")
    p = as_array(probs, "probs")
    if p.ndim not in (1, 2):
        raise ValueError(f"probs must be (N,) or (N, K), got shape {tuple(p.shape)}")
    check_same_length(yt, p, "y_true", "probs")
    check_finite(p, "probs")
    k = 2 if p.ndim == 1 else p.shape[1]
    if yt.max() >= k:
        raise ValueError(f"y_true has label {int(yt.max())} but probs describes only {k} classes")
    names = [str(c) for c in range(k)] if class_names is None else list(class_names)
    if len(names) != k:
        raise ValueError(f"class_names has {len(names)} entries but there are {k} classes")
    avg = "binary" if k == 2 else "macro"
    p_bin = p[:, 1] if (p.ndim == 2 and k == 2) else p  # binary tasks: positive-class score

    def _metric(name: str, average: str):
        def fn(y: np.ndarray, q: np.ndarray) -> float:
            return _average(name, y, _predict(q), average, k, warn=False)
        fn.__name__ = f"{name}_{average}"
        return fn

    def _acc(y: np.ndarray, q: np.ndarray) -> float:
        return float(np.mean(y == _predict(q)))

    fns = {
        "accuracy": _acc,
        "precision": _metric("precision", avg),
        "recall": _metric("recall", avg),
        "specificity": _metric("specificity", avg),
        "f1": _metric("f1", avg),
        "macro_f1": _metric("f1", "macro"),
    }
    report: dict[str, Any] = {"n": int(len(yt)), "num_classes": k}
    for name, fn in fns.items():
        report[name] = fn(yt, p)
    report["sensitivity"] = report["recall"]
    cm = confusion_matrix(yt, _predict(p), k)
    scores = per_class_scores(cm)
    if k > 2 and not scores["present"].all():
        logger.warning("classification_report: classes %s absent from y_true and y_pred; skipped in macro "
                       "averages", [names[c] for c in np.flatnonzero(~scores["present"])])
    per_auc, skipped = roc_auc_per_class(yt, p if p.ndim == 2 else np.stack([1 - p, p], axis=1))
    if k > 2 and skipped:
        logger.warning("classification_report: classes %s absent from y_true; skipped in the macro AUC",
                       [names[c] for c in skipped])
    report["auc"] = _auc_quiet(yt, p_bin) if per_auc else float("nan")
    report["auc_skipped_classes"] = [names[c] for c in skipped] if k > 2 else []
    report["per_class"] = {
        names[c]: {
            "precision": float(scores["precision"][c]),
            "recall": float(scores["recall"][c]),
            "specificity": float(scores["specificity"][c]),
            "f1": float(scores["f1"][c]),
            "auc": per_auc.get(c, float("nan")),
            "support": int(scores["support"][c]),
        }
        for c in range(k)
    }
    report["confusion_matrix"] = cm.tolist()
    if k == 2:
        if np.isnan(report["auc"]):
            logger.warning("classification_report: y_true holds a single class; AUC and Youden undefined")
            report["youden"] = None
        else:
            report["youden"] = youden_threshold(yt, p_bin)
    if ci:
        fns["auc"] = _auc_quiet
        report["ci"] = {}
        for name, fn in fns.items():
            if name == "auc" and np.isnan(report["auc"]):
                continue
            lo, hi = bootstrap_ci(fn, yt, p_bin if name == "auc" else p, n=n_bootstrap, seed=seed, alpha=alpha)
            report["ci"][name] = [lo, hi]
        report["ci"]["sensitivity"] = report["ci"]["recall"]
        report["ci_level"] = 1.0 - alpha
    return report
