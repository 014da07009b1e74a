"""Box AP and CTR precision against hand-computed cases."""

import logging

import numpy as np
import pytest
import torch

from echocare.metrics import (
    average_precision,
    box_iou,
    cardiothoracic_ratio,
    ctr_precision,
    ctr_report,
    detection_report,
)
from echocare.metrics.detection import minor_axis_length

GT = [{"boxes": [[0, 0, 10, 10], [20, 20, 40, 40]], "labels": [0, 1]}]


def _pred(boxes, scores, labels):
    return [{"boxes": boxes, "scores": scores, "labels": labels}]


def test_box_iou():
    iou = box_iou([[0, 0, 10, 10]], [[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30]])
    assert iou.shape == (1, 3)
    assert iou[0].tolist() == pytest.approx([1.0, 50 / 150, 0.0])


def test_perfect_detection_is_one():
    r = detection_report(_pred(torch.tensor([[0, 0, 10, 10], [20, 20, 40, 40.0]]), [0.9, 0.8], [0, 1]), GT)
    assert r["map"] == 1.0 and r["map50"] == 1.0 and r["ap"] == {"0": 1.0, "1": 1.0}


def test_false_positive_ranked_above_or_below_the_true_positive():
    t = [{"boxes": [[0, 0, 10, 10]], "labels": [0]}]
    above = detection_report(_pred([[50, 50, 60, 60], [0, 0, 10, 10]], [0.9, 0.8], [0, 0]), t)
    below = detection_report(_pred([[50, 50, 60, 60], [0, 0, 10, 10]], [0.1, 0.8], [0, 0]), t)
    assert above["ap50"]["0"] == pytest.approx(0.5)  # PR points (r=0,p=0), (r=1,p=.5)
    assert below["ap50"]["0"] == pytest.approx(1.0)


def test_false_negative_halves_ap_and_missing_class_scores_zero():
    r = detection_report(_pred([[0, 0, 10, 10]], [0.9], [0]),
                         [{"boxes": [[0, 0, 10, 10], [30, 30, 40, 40], [20, 20, 25, 25]], "labels": [0, 0, 1]}])
    assert r["ap50"] == {"0": 0.5, "1": 0.0}
    assert r["map50"] == pytest.approx(0.25)


def test_ranked_list_all_point_interpolation_by_hand():
    gts = [[0, 0, 10, 10], [20, 0, 30, 10], [40, 0, 50, 10]]
    far = [[100, 100, 110, 110], [120, 100, 130, 110]]
    dets = [gts[0], far[0], gts[1], far[1], gts[2]]  # TP FP TP FP TP
    r = detection_report(_pred(dets, [0.9, 0.8, 0.7, 0.6, 0.5], [0] * 5), [{"boxes": gts, "labels": [0, 0, 0]}])
    # envelope precision at recall 1/3, 2/3, 1 = 1, 2/3, 3/5
    assert r["ap50"]["0"] == pytest.approx((1 + 2 / 3 + 3 / 5) / 3)
    assert average_precision(np.array([0.5, 1.0]), np.array([1.0, 0.5])) == pytest.approx(0.75)


def test_coco_average_over_iou_thresholds():
    t = [{"boxes": [[0, 0, 10, 10]], "labels": [0]}]
    r = detection_report(_pred([[0, 0, 10, 7.2]], [0.9], [0]), t)  # IoU 0.72: matches t = .50 ... .70
    assert r["ap50"]["0"] == 1.0 and r["ap75"]["0"] == 0.0
    assert r["ap"]["0"] == pytest.approx(0.5)


def test_duplicate_detection_is_a_false_positive_and_xywh():
    t = [{"boxes": [[0, 0, 10, 10]], "labels": [0]}]
    r = detection_report(_pred([[0, 0, 10, 10], [0, 0, 10, 10]], [0.9, 0.8], [0, 0]), t, box_format="xywh")
    assert r["ap50"]["0"] == 1.0  # second copy is an FP ranked after the TP
    r = detection_report(_pred([[1, 1, 10, 10]], [0.9], [0]), [{"boxes": [[1, 1, 10, 10]], "labels": [0]}],
                         box_format="xywh")
    assert r["map"] == 1.0


def test_class_without_ground_truth_is_skipped_and_logged(caplog):
    with caplog.at_level(logging.WARNING, logger="echocare.metrics"):
        r = detection_report(_pred([[0, 0, 10, 10]], [0.9], [0]), [{"boxes": [[0, 0, 10, 10]], "labels": [0]}],
                             num_classes=2, class_names=["heart", "thorax"])
    assert r["skipped_classes"] == ["thorax"] and r["ap"] == {"heart": 1.0}
    assert "thorax" in caplog.text


def test_detection_input_errors():
    with pytest.raises(ValueError, match=r"preds\[0\] has no 'scores'"):
        detection_report([{"boxes": [[0, 0, 1, 1]], "labels": [0]}], GT)
    with pytest.raises(ValueError, match="x2 < x1"):
        detection_report(_pred([[10, 0, 0, 10]], [0.9], [0]), GT)


def test_ctr_precision_hand_case():
    # R_pred = min(10,20) / min(40,30) = 1/3 ; R_true = 12 / 30 = 0.4 ; P = 1 - |0.4 - 1/3| / 0.4 = 5/6
    assert cardiothoracic_ratio([[0, 0, 10, 20]], [[0, 0, 40, 30]]).tolist() == pytest.approx([1 / 3])
    p = ctr_precision([[0, 0, 10, 20]], [[0, 0, 40, 30]], [[0, 0, 12, 20]], [[0, 0, 40, 30]])
    assert p == pytest.approx(5 / 6)
    # rotated boxes / ellipses (cx, cy, w, h, angle): minor axis = min(w, h), the angle does not matter
    assert minor_axis_length([[5, 5, 8, 3, 0.7]], fmt="cxcywha").tolist() == [3.0]
    p = ctr_precision([[0, 0, 6, 10, 0.3]], [[0, 0, 20, 30, 1.0]], [[0, 0, 5, 9, 0.0]], [[0, 0, 25, 20, 0.0]],
                      fmt="cxcywha")
    assert p == pytest.approx(1 - abs(0.25 - 0.3) / 0.25)
    # not clipped: relative error above 100% gives a negative precision
    assert ctr_precision([[0, 0, 30, 30]], [[0, 0, 10, 10]], [[0, 0, 1, 1]], [[0, 0, 1, 1]]) == pytest.approx(-1.0)


def test_ctr_report_uses_top_scoring_boxes_and_counts_missing():
    targets = [{"boxes": [[0, 0, 12, 20], [0, 0, 40, 30]], "labels": [0, 1]}] * 2
    preds = [
        {"boxes": [[0, 0, 10, 20], [0, 0, 2, 2], [0, 0, 40, 30]], "scores": [0.9, 0.3, 0.8], "labels": [0, 0, 1]},
        {"boxes": [[0, 0, 10, 20]], "scores": [0.9], "labels": [0]},
    ]
    r = ctr_report(preds, targets, cardiac_label=0, thoracic_label=1)
    assert r["per_image"] == pytest.approx([5 / 6, 0.0])
    assert r["n_missing"] == 1 and r["ctr_precision"] == pytest.approx(5 / 12)
    with pytest.raises(ValueError, match=r"targets\[0\] has 0 thoracic boxes"):
        ctr_report(preds[:1], [{"boxes": [[0, 0, 12, 20]], "labels": [0]}], 0, 1)


def test_max_dets_keeps_the_top_scoring_detections_per_image_and_class():
    # 101 low-scoring misses first, then the true positive with the lowest score of all
    boxes = [[50, 50, 60, 60]] * 101 + [[0, 0, 10, 10]]
    scores = [0.9] * 101 + [0.1]
    preds = _pred(boxes, scores, [0] * 102)
    gt = [{"boxes": [[0, 0, 10, 10]], "labels": [0]}]
    capped = detection_report(preds, gt)  # default: pycocotools' 100 per image and class
    assert capped["max_dets"] == 100 and capped["ap50"]["0"] == 0.0  # the hit is the 102nd: dropped
    full = detection_report(preds, gt, max_dets=None)
    assert full["ap50"]["0"] == pytest.approx(1 / 102)
    with pytest.raises(ValueError, match="max_dets"):
        detection_report(preds, gt, max_dets=0)
