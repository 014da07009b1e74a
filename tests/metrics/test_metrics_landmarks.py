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


def test_per_landmark_mre_survives_hidden_landmarks():
    gt = np.array([[[0.0, 0.0], [10.0, 10.0], [5.0, 5.0]],
                   [[0.0, 0.0], [np.nan, np.nan], [np.nan, np.nan]]])  # image 1 hides landmarks 1 and 2
    pred = gt.copy()
    pred[0] += [[3.0, 4.0], [0.0, 2.0], [1.0, 0.0]]  # errors 5, 2, 1
    pred[1] = [[6.0, 8.0], [1.0, 1.0], [2.0, 2.0]]  # error 10 on landmark 0; the hidden ones do not count
    r = landmark_report(pred, gt, radii=(2.0,), landmark_names=["a", "b", "c"], spacing=[[1.0, 1.0], [1.0, 1.0]])
    assert r["per_landmark_mre"] == {"a": pytest.approx(7.5), "b": pytest.approx(2.0), "c": pytest.approx(1.0)}
    assert r["n_hidden"] == 2 and r["n_landmarks"] == 4
    assert r["mre"] == pytest.approx((5 + 2 + 1 + 10) / 4) and r["sdr"]["2"] == pytest.approx(0.5)
    gt[:, 2] = np.nan  # landmark c hidden everywhere: its MRE is undefined (NaN, null in metric files)
    r = landmark_report(pred, gt, landmark_names=["a", "b", "c"])
    assert np.isnan(r["per_landmark_mre"]["c"]) and r["per_landmark_mre"]["b"] == pytest.approx(2.0)
    with pytest.raises(ValueError, match="every ground-truth landmark is hidden"):
        landmark_report(pred, np.full_like(gt, np.nan))
