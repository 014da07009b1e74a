"""DSC and NSD: hand masks, empty-mask convention, shifted disk and shifted square."""

import numpy as np
import pytest
from scipy.ndimage import binary_erosion

from echocare.metrics import dice_per_class, nsd_per_class, segmentation_report


def _disk(size=64, r=12, cy=32, cx=28):
    yy, xx = np.mgrid[:size, :size]
    return ((yy - cy) ** 2 + (xx - cx) ** 2 <= r * r).astype(np.int64)


def _brute_nsd(a, b, tol):
    """Independent NSD: boundary = mask pixels with a 4-neighbour outside; all-pairs distances."""
    cross = np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], bool)
    ba = np.argwhere(a.astype(bool) & ~binary_erosion(a.astype(bool), cross))
    bb = np.argwhere(b.astype(bool) & ~binary_erosion(b.astype(bool), cross))
    d = np.sqrt(((ba[:, None, :] - bb[None, :, :]) ** 2).sum(-1))
    return ((d.min(1) <= tol).sum() + (d.min(0) <= tol).sum()) / (len(ba) + len(bb))


def test_dice_hand_squares_and_classes():
    gt = np.zeros((40, 40), np.int64)
    pred = gt.copy()
    gt[10:30, 10:30] = 1  # 400 px
    pred[10:30, 14:34] = 1  # 400 px, overlap 20 x 16 = 320
    pred[0:2, 0:5] = 2  # class 2 only in the prediction
    d = dice_per_class(pred, gt, num_classes=3)
    assert d.shape == (1, 3)
    assert d[0, 1] == pytest.approx(2 * 320 / 800)
    assert d[0, 2] == 0.0


def test_empty_mask_convention():
    empty = np.zeros((16, 16), np.int64)
    blob = empty.copy()
    blob[4:8, 4:8] = 1
    pred = np.stack([empty, empty, blob])
    gt = np.stack([empty, blob, empty])
    for fn in (dice_per_class, nsd_per_class):
        v = fn(pred, gt, num_classes=2)
        assert v[:, 1].tolist() == [1.0, 0.0, 0.0], fn.__name__


@pytest.mark.parametrize("tol", [3.0, 4.5, 8.0])
def test_nsd_shifted_disk_within_tolerance_is_one(tol):
    a = _disk()
    b = np.roll(a, 3, axis=1)  # shifted by k = 3 px
    assert nsd_per_class(b, a, 2, tolerance=tol)[0, 1] == pytest.approx(1.0)


@pytest.mark.parametrize("tol", [0.0, 1.0, 2.0])
def test_nsd_shifted_disk_below_tolerance_matches_brute_force(tol):
    a = _disk()
    b = np.roll(a, 3, axis=1)
    nsd = nsd_per_class(b, a, 2, tolerance=tol)[0, 1]
    assert nsd < 1.0
    assert nsd == pytest.approx(_brute_nsd(b, a, tol), abs=1e-6)


@pytest.mark.parametrize("tol", [0, 1, 2, 3])
def test_nsd_shifted_square_analytic(tol):
    s, k = 20, 4
    a = np.zeros((64, 64), np.int64)
    b = a.copy()
    a[10:10 + s, 10:10 + s] = 1
    b[10:10 + s, 10 + k:10 + k + s] = 1
    # per boundary: top+bottom rows within tol: 2 (s - k + tol); far side column: 2 tol (corner rows)
    expected = (2 * s - 2 * k + 4 * tol) / (4 * s - 4)
    assert nsd_per_class(b, a, 2, tolerance=tol)[0, 1] == pytest.approx(expected, abs=1e-6)


def test_nsd_spacing_in_mm():
    a = _disk()
    b = np.roll(a, 4, axis=1)  # 4 columns at 2 mm per column = 8 mm
    assert nsd_per_class(b, a, 2, tolerance=8.0, spacing=(1.0, 2.0))[0, 1] == pytest.approx(1.0)
    assert nsd_per_class(b, a, 2, tolerance=7.5, spacing=(1.0, 2.0))[0, 1] < 1.0
    assert nsd_per_class(b, a, 2, tolerance=4.0)[0, 1] == pytest.approx(1.0)  # pixels


def test_segmentation_report_per_class_and_mean():
    gt = np.zeros((2, 32, 32), np.int64)
    gt[:, 4:12, 4:12] = 1
    gt[:, 20:28, 20:28] = 2
    pred = gt.copy()
    pred[1, 20:28, 20:28] = 0  # class 2 missed in image 1
    r = segmentation_report(pred, gt, num_classes=3, tolerance=2.0, class_names=["bg", "nodule", "vessel"])
    assert r["dice"] == {"nodule": 1.0, "vessel": 0.5}
    assert r["nsd"] == {"nodule": 1.0, "vessel": 0.5}
    assert r["mean_dice"] == pytest.approx(0.75)
    assert r["n_images"] == 2 and r["tolerance_unit"] == "px"
    assert "bg" in segmentation_report(pred, gt, 3, include_background=True, class_names=["bg", "a", "b"])["dice"]


def test_bad_inputs():
    with pytest.raises(ValueError, match="gt_labels shape"):
        dice_per_class(np.zeros((4, 4)), np.zeros((4, 5)), 2)
    with pytest.raises(ValueError, match=r"pred_labels holds values outside the integer range \[0, 1\]: \[3"):
        dice_per_class(np.full((4, 4), 3), np.zeros((4, 4)), 2)
    with pytest.raises(ValueError, match="tolerance"):
        nsd_per_class(np.zeros((4, 4)), np.zeros((4, 4)), 2, tolerance=[1.0, 2.0, 3.0])


def test_nsd_spacing_per_image_only_as_pairs():
    a = _disk()
    b = np.roll(a, 4, axis=1)  # 4 columns off
    pred, gt = np.stack([b, b]), np.stack([a, a])
    # a flat pair is (sy, sx) for every image, even with exactly two images
    assert nsd_per_class(pred, gt, 2, tolerance=8.0, spacing=[1.0, 2.0])[:, 1] == pytest.approx([1.0, 1.0])
    # per image: a list of (sy, sx) pairs; image 1 has 3 mm columns, so 12 mm > 8 mm
    per = nsd_per_class(pred, gt, 2, tolerance=8.0, spacing=[[1.0, 2.0], [1.0, 3.0]])[:, 1]
    assert per[0] == pytest.approx(1.0) and per[1] < 1.0
    with pytest.raises(ValueError, match=r"per-image scalars are not accepted"):
        nsd_per_class(np.stack([b, b, b]), np.stack([a, a, a]), 2, spacing=[1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="3 \\(sy, sx\\) pairs for 2 images"):
        nsd_per_class(pred, gt, 2, spacing=[[1, 1], [1, 1], [1, 1]])
