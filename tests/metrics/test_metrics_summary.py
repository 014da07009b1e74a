"""Repeated-run summaries, t-tests, tables and the label-efficiency plot."""

import logging

import numpy as np
import pytest
from scipy import stats

from echocare.metrics import (
    compare_to_best,
    comparison_table,
    flatten_metrics,
    format_mean_std,
    label_efficiency_table,
    mean_std,
    plot_label_efficiency,
    significance_stars,
    summarize_runs,
    ttest_pvalue,
)


def test_mean_std_and_formatting():
    s = mean_std([1, 2, 3, 4])
    assert s["mean"] == 2.5 and s["std"] == pytest.approx(np.sqrt(5 / 3)) and s["n"] == 4
    assert format_mean_std(s["mean"], s["std"]) == "2.500±1.291"
    assert format_mean_std(0.86478, 0.01192, scale=100, digits=2) == "86.48±1.19"
    assert mean_std([0.5])["std"] == 0.0


def test_mean_std_drops_and_counts_nan(caplog):
    with caplog.at_level(logging.WARNING, logger="echocare.metrics"):
        s = mean_std([1.0, float("nan"), 3.0])
    assert (s["mean"], s["n"], s["n_nan"]) == (2.0, 2, 1)
    assert "1 of 3" in caplog.text


def test_ttest_by_hand_and_stars():
    # means 2 and 5, pooled variance 1, t = -3 / sqrt(2/3) = -3.674, df = 4
    p = ttest_pvalue([1, 2, 3], [4, 5, 6])
    assert p == pytest.approx(2 * stats.t.sf(3 / np.sqrt(2 / 3), df=4))
    assert p == pytest.approx(0.0213, abs=1e-4)
    assert significance_stars(p) == "*"
    assert [significance_stars(v) for v in (0.0005, 0.005, 0.05, 0.2)] == ["***", "**", "", ""]
    assert ttest_pvalue([1, 1], [1, 1]) == 1.0 and ttest_pvalue([1, 1], [2, 2]) == 0.0
    with pytest.raises(ValueError, match=">= 2 runs"):
        ttest_pvalue([1], [1, 2])


def test_compare_to_best_lower_is_better():
    cmp = compare_to_best({"a": [5.0, 5.1, 4.9], "b": [3.0, 3.1, 2.9]}, higher_is_better=False)
    assert cmp["b"]["best"] and np.isnan(cmp["b"]["p_value"])
    assert cmp["a"]["p_value"] < 0.001 and cmp["a"]["stars"] == "***"


def test_comparison_table_markdown():
    table = comparison_table({"echocare": {"auc": [0.9, 0.91, 0.92]}, "usfm": {"auc": [0.8, 0.81, 0.82]}},
                             scale=100, digits=1)
    lines = table.strip().splitlines()
    assert lines[0] == "| model | auc |"
    assert lines[2] == "| echocare | **91.0±1.0** |"
    assert lines[3] == "| usfm | 81.0±1.0*** |"


def test_flatten_and_summarize_runs(caplog):
    runs = [{"acc": 0.8, "per_class": {"a": {"f1": 0.5}}, "skipped": ["x"], "ok": True},
            {"acc": 0.9, "per_class": {"a": {"f1": 0.7}}}]
    assert flatten_metrics(runs[0]) == {"acc": 0.8, "per_class.a.f1": 0.5}
    with caplog.at_level(logging.WARNING, logger="echocare.metrics"):
        s = summarize_runs(runs + [{"acc": 1.0}])
    assert s["acc"]["mean"] == pytest.approx(0.9) and s["acc"]["n"] == 3
    assert s["per_class.a.f1"]["n"] == 2 and s["per_class.a.f1"]["values"] == [0.5, 0.7]
    assert "per_class.a.f1" in caplog.text


def test_label_efficiency_table_and_plot(tmp_path):
    results = {1.0: {"dice": [0.9, 0.92]}, 0.1: {"dice": [0.7, 0.74], "nsd": [0.6, 0.6]}}
    table = label_efficiency_table(results, scale=100, digits=1)
    assert table.splitlines() == [
        "| labelled fraction | dice | nsd |",
        "|---|---|---|",
        "| 10% | 72.0±2.8 | 60.0±0.0 |",
        "| 100% | 91.0±1.4 | – |",
    ]
    path = plot_label_efficiency({"echocare": results, "usfm": {0.1: {"dice": [0.6, 0.6]}}}, tmp_path / "a" / "le.png",
                                 title="label efficiency")
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    with pytest.raises(ValueError, match="fraction must be in"):
        label_efficiency_table({1.5: {"dice": [1.0]}})
