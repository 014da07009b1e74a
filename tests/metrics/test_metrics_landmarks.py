"""Landmark MSE / MRE / SDR on known offsets."""

import numpy as np
import pytest
import torch

from echocare.metrics import landmark_mse, landmark_report, mean_radial_error, success_detection_rate

GT = np.array([[10.0, 10.0], [20.0, 20.0], [30.0, 30.0], [40.0, 40.0], [50.0, 50.0]])
OFFSETS = np.array([[0.0, 0.0], [1.5, 0.0], [0.0, -3.0], [3.0, 4.0], [-12.0, 0.0]])  # radii 0, 1.5, 3, 5, 12


def test_sdr_known_offsets():
    sdr = success_detection_rate(GT + OFFSETS, GT)
    assert sdr == {2.0: pytest.approx(2 / 5), 4.0: pytest.approx(3 / 5), 10.0: pytest.approx(4 / 5)}
    assert success_detection_rate(GT + OFFSETS, GT, radii=[3.0])[3.0] == pytest.approx(3 / 5)  # <= counts


def test_mse_and_mre_by_hand():
    assert landmark_mse(GT + OFFSETS, GT) == pytest.approx((0 + 2.25 + 9 + 25 + 144) / 5)
    assert mean_radial_error(torch.tensor(GT + OFFSETS), torch.tensor(GT)) == pytest.approx((0 + 1.5 + 3 + 5 + 12) / 5)


def test_spacing_in_mm():
    pred, gt = np.array([[3.0, 4.0]]), np.zeros((1, 2))
    assert mean_radial_error(pred, gt, spacing=(2.0, 0.5)) == pytest.approx(np.sqrt(36 + 4))
    assert success_detection_rate(pred, gt, radii=[2.0], spacing=0.4)[2.0] == 1.0  # 5 px * 0.4 = 2 mm
    per_image = np.array([[1.0, 1.0], [2.0, 2.0]])
    p3 = np.array([[[3.0, 4.0]], [[3.0, 4.0]]])
    assert mean_radial_error(p3, np.zeros_like(p3), spacing=per_image) == pytest.approx(7.5)


def test_report_per_landmark_and_errors():
    pred = np.stack([GT + OFFSETS, GT])  # (N=2, K=5, 2)
    r = landmark_report(pred, np.stack([GT, GT]), landmark_names=list("abcde"))
    assert r["n_landmarks"] == 10
    assert r["sdr"]["2"] == pytest.approx(7 / 10)
    assert r["per_landmark_mre"]["e"] == pytest.approx(6.0)
    with pytest.raises(ValueError, match="pred shape"):
        landmark_mse(GT, GT[:3])
    bad = GT.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="gt contains 1 non-finite"):
        landmark_mse(GT, bad)
