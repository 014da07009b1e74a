"""Percentile bootstrap CIs."""

import logging

import numpy as np
import pytest

from echocare.metrics import bootstrap_ci, roc_auc


def test_ci_contains_estimate_has_expected_width_and_is_deterministic():
    x = np.random.default_rng(0).normal(size=2000)
    lo, hi = bootstrap_ci(np.mean, x, n=500, seed=0)
    assert lo < x.mean() < hi
    # normal theory: width ~ 2 * 1.96 / sqrt(2000) = 0.0877
    assert hi - lo == pytest.approx(2 * 1.96 / np.sqrt(2000), rel=0.15)
    assert bootstrap_ci(np.mean, x, n=500, seed=0) == (lo, hi)
    assert bootstrap_ci(np.mean, x, n=500, seed=1) != (lo, hi)


def test_alpha_controls_width_and_constant_metric_is_degenerate():
    x = np.arange(50.0)
    lo90, hi90 = bootstrap_ci(np.mean, x, n=300, alpha=0.10)
    lo95, hi95 = bootstrap_ci(np.mean, x, n=300, alpha=0.05)
    assert lo95 <= lo90 < hi90 <= hi95
    assert bootstrap_ci(lambda a, b: float(np.mean(a == b)), [1, 2, 3], [1, 2, 3], n=50) == (1.0, 1.0)


def test_paired_resampling_and_undefined_resamples_are_counted(caplog):
    y = np.array([0, 0, 0, 0, 0, 0, 0, 1])
    s = np.array([0.1, 0.2, 0.3, 0.1, 0.2, 0.3, 0.4, 0.9])
    with caplog.at_level(logging.WARNING, logger="echocare.metrics"):
        lo, hi = bootstrap_ci(roc_auc, y, s, n=200, seed=0)
    assert (lo, hi) == (1.0, 1.0)  # paired: the positive always outranks the negatives
    assert "undefined on" in caplog.text and "of 200 resamples" in caplog.text


def test_errors():
    with pytest.raises(ValueError, match="arrays\\[1\\] has 2 cases"):
        bootstrap_ci(np.mean, [1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="undefined on all 20"):
        bootstrap_ci(roc_auc, [1, 1, 1], [0.2, 0.3, 0.4], n=20)
    with pytest.raises(ValueError, match="alpha"):
        bootstrap_ci(np.mean, [1, 2], alpha=1.5)


def test_ragged_per_image_inputs_are_resampled_as_cases():
    from echocare.metrics import detection_report

    targets = [{"boxes": [[0, 0, 10, 10]], "labels": [0]} for _ in range(6)]
    hit = {"boxes": [[0, 0, 10, 10]], "scores": [0.9], "labels": [0]}
    miss = {"boxes": [[50, 50, 60, 60]], "scores": [0.8], "labels": [0]}
    preds = [hit, hit, hit, miss, hit, miss]

    def map50(p, t):
        return detection_report(list(p), list(t))["map50"]

    lo, hi = bootstrap_ci(map50, preds, targets, n=100, seed=0)
    assert 0.0 <= lo < map50(preds, targets) < hi <= 1.0
