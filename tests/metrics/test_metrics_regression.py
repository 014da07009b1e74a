"""MAE, RMSE, R², Pearson r against hand values."""

import logging

import numpy as np
import pytest
from scipy import stats

from echocare.metrics import mae, pearson_r, r2_score, regression_report, rmse

Y, P = [1.0, 2.0, 3.0, 4.0], [2.0, 2.0, 2.0, 6.0]  # errors 1, 0, 1, 2


def test_hand_values():
    assert mae(Y, P) == pytest.approx(1.0)
    assert rmse(Y, P) == pytest.approx(np.sqrt(1.5))
    assert r2_score(Y, P) == pytest.approx(1 - 6 / 5)
    assert pearson_r(Y, P) == pytest.approx(6 / np.sqrt(60))
    assert pearson_r(Y, P) == pytest.approx(stats.pearsonr(Y, P)[0])


def test_report_and_undefined_values(caplog):
    r = regression_report(Y, P)
    assert r["mae"] == pytest.approx(1.0) and r["n"] == 4
    with caplog.at_level(logging.WARNING, logger="echocare.metrics"):
        r = regression_report([5.0, 5.0], [4.0, 6.0])
    assert np.isnan(r["r2"]) and r["mae"] == pytest.approx(1.0)
    assert "r2 reported as NaN" in caplog.text
    with pytest.raises(ValueError, match="y_pred contains 1 non-finite"):
        mae([1.0, 2.0], [1.0, np.inf])
