"""Classification metrics against hand-computed values."""

import logging

import numpy as np
import pytest
import torch

from echocare.metrics import (
    accuracy,
    classification_report,
    confusion_matrix,
    f1_score,
    precision,
    recall,
    roc_auc,
    specificity,
    youden_threshold,
)

# 3-class confusion: per class (P, R, F1) = c0 (1, 2/3, .8), c1 (.5, .5, .5), c2 (.5, 1, 2/3)
Y_TRUE = [0, 0, 0, 1, 1, 2]
Y_PRED = [0, 0, 1, 1, 2, 2]


def test_auc_known_ranking():
    assert roc_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.75)
    assert roc_auc(np.array([0, 0, 1, 1]), torch.tensor([0.1, 0.4, 0.35, 0.8])) == pytest.approx(0.75)


def test_auc_ties_count_half_and_two_column_probs():
    assert roc_auc([0, 1], [0.5, 0.5]) == pytest.approx(0.5)
    probs = np.array([[0.9, 0.1], [0.6, 0.4], [0.65, 0.35], [0.2, 0.8]])
    assert roc_auc([0, 0, 1, 1], probs) == pytest.approx(0.75)


def test_auc_single_class_is_an_error():
    with pytest.raises(ValueError, match="only class 1"):
        roc_auc([1, 1, 1], [0.2, 0.5, 0.9])


def test_multiclass_auc_skips_absent_class_with_warning(caplog):
    y = [0, 0, 1, 1]
    probs = np.array([[0.8, 0.1, 0.1], [0.5, 0.4, 0.1], [0.3, 0.6, 0.1], [0.45, 0.35, 0.2]])
    # class 0 one-vs-rest: pos scores {.8,.5} vs neg {.3,.45} -> 1.0; class 1: pos {.6,.35} vs neg {.1,.4} -> .75
    with caplog.at_level(logging.WARNING, logger="echocare.metrics"):
        auc = roc_auc(y, probs)
    assert auc == pytest.approx((1.0 + 0.75) / 2)
    assert "[2]" in caplog.text and "absent" in caplog.text


def test_confusion_and_macro_scores_by_hand():
    cm = confusion_matrix(Y_TRUE, Y_PRED)
    assert cm.tolist() == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    assert accuracy(Y_TRUE, Y_PRED) == pytest.approx(4 / 6)
    assert f1_score(Y_TRUE, Y_PRED, average="macro") == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)
    assert precision(Y_TRUE, Y_PRED, average="macro") == pytest.approx((1 + 0.5 + 0.5) / 3)
    assert recall(Y_TRUE, Y_PRED, average="macro") == pytest.approx((2 / 3 + 0.5 + 1) / 3)
    assert specificity(Y_TRUE, Y_PRED, average="macro") == pytest.approx((1 + 0.75 + 0.8) / 3)


def test_binary_scores_by_hand():
    yt, yp = [0, 0, 1, 1, 1], [0, 1, 1, 1, 0]  # TP 2, FP 1, FN 1, TN 1
    assert precision(yt, yp) == pytest.approx(2 / 3)
    assert recall(yt, yp) == pytest.approx(2 / 3)
    assert specificity(yt, yp) == pytest.approx(0.5)
    assert f1_score(yt, yp, average="binary") == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="needs 2 classes"):
        precision(Y_TRUE, Y_PRED, average="binary")
    # a binary task stays binary when only negatives occur: no positive predicted -> precision 0, spec 1
    assert precision([0, 0], [0, 0]) == 0.0 and specificity([0, 0], [0, 0]) == 1.0


def test_macro_skips_class_absent_everywhere(caplog):
    with caplog.at_level(logging.WARNING, logger="echocare.metrics"):
        f1 = f1_score([0, 1, 1], [0, 1, 0], average="macro", num_classes=4)
    # c0: P .5 R 1 F1 2/3 ; c1: P 1 R .5 F1 2/3 ; classes 2, 3 skipped
    assert f1 == pytest.approx(2 / 3)
    assert "[2, 3]" in caplog.text


def test_youden_threshold_by_hand():
    y = [0, 0, 0, 0, 1, 1, 1]
    s = [0.1, 0.2, 0.3, 0.5, 0.4, 0.7, 0.9]
    r = youden_threshold(y, s)
    assert r["threshold"] == pytest.approx(0.4)
    assert r["sensitivity"] == pytest.approx(1.0)
    assert r["specificity"] == pytest.approx(0.75)
    assert r["youden_index"] == pytest.approx(0.75)
    assert r["accuracy"] == pytest.approx(6 / 7)


def test_youden_tie_prefers_highest_threshold():
    # J = 2/3 at both t = .7 (sens 2/3, spec 1) and t = .4 (sens 1, spec 2/3)
    r = youden_threshold([0, 0, 0, 1, 1, 1], [0.1, 0.2, 0.6, 0.4, 0.7, 0.9])
    assert r["threshold"] == pytest.approx(0.7)
    assert (r["sensitivity"], r["specificity"]) == pytest.approx((2 / 3, 1.0))


def test_input_errors_name_the_argument():
    with pytest.raises(ValueError, match="y_true has 3 entries but y_pred has 2"):
        accuracy([0, 1, 1], [0, 1])
    with pytest.raises(ValueError, match="y_pred"):
        accuracy([0, 1], [0, -1])
    with pytest.raises(ValueError, match="scores contains 1 non-finite"):
        roc_auc([0, 1], [0.1, float("nan")])


def _binary_data(n=80, seed=1):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    return y, np.clip(rng.normal(0.35 + 0.3 * y, 0.2), 0, 1)


def test_binary_report_point_estimates_cis_and_youden():
    y, s = _binary_data()
    r = classification_report(y, s, n_bootstrap=200, seed=3)
    yp = (s >= 0.5).astype(int)
    assert r["accuracy"] == pytest.approx(accuracy(y, yp))
    assert r["f1"] == pytest.approx(f1_score(y, yp, average="binary"))
    assert r["auc"] == pytest.approx(roc_auc(y, s))
    assert r["sensitivity"] == r["recall"]
    assert r["youden"] == youden_threshold(y, s)
    for name in ("accuracy", "precision", "recall", "specificity", "f1", "macro_f1", "auc"):
        lo, hi = r["ci"][name]
        assert lo <= r[name] <= hi, name
        assert hi > lo, name
    again = classification_report(y, s, n_bootstrap=200, seed=3)
    assert again["ci"] == r["ci"]
    other = classification_report(y, s, n_bootstrap=200, seed=4)
    assert other["ci"]["auc"] != r["ci"]["auc"]


def test_multiclass_report_macro_and_skipped_auc_class():
    probs = np.eye(4)[[0, 0, 1, 1, 2, 2, 1]] * 0.7 + 0.075
    y = [0, 0, 1, 1, 2, 2, 2]  # class 3 absent from y_true
    r = classification_report(y, probs, ci=False, class_names=["a", "b", "c", "d"])
    assert r["f1"] == r["macro_f1"]
    assert r["auc_skipped_classes"] == ["d"]
    assert r["accuracy"] == pytest.approx(6 / 7)
    assert r["per_class"]["c"]["recall"] == pytest.approx(2 / 3)
    assert r["per_class"]["b"]["precision"] == pytest.approx(2 / 3)
    assert r["confusion_matrix"][2] == [0, 1, 2, 0]
    assert "youden" not in r and "ci" not in r
