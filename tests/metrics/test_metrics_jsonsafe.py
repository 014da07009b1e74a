"""Metric files are strict JSON: NaN/inf become null with a reason in a top-level "nulls" map."""

import json
import math

import numpy as np
import pytest
import torch

from echocare.metrics import classification_report
from echocare.metrics.jsonsafe import dumps_strict, strict_json


def _strict_loads(text):
    return json.loads(text, parse_constant=lambda c: pytest.fail(f"non-strict JSON constant {c}"))


def test_nan_and_inf_become_null_with_reasons():
    report = {"auc": float("nan"), "acc": 1.0, "per_class": {"1": {"auc": np.float32("nan"), "f1": 0.5}},
              "values": [1.0, float("inf")], "loss": torch.tensor(float("nan")), "n": 3}
    out = strict_json(report)
    assert out["auc"] is None and out["per_class"]["1"]["auc"] is None and out["values"] == [1.0, None]
    assert out["acc"] == 1.0 and out["n"] == 3 and out["loss"] is None
    assert out["nulls"]["auc"].startswith("undefined: the evaluated set holds a single class")
    assert out["nulls"]["per_class.1.auc"] == out["nulls"]["auc"]
    assert out["nulls"]["values.1"].startswith("infinite (+inf)")
    assert strict_json({"r2": math.nan}, reasons={"r2": "constant"})["nulls"] == {"r2": "constant"}
    assert "nulls" not in strict_json({"a": 1.0})


def test_single_class_validation_report_is_strict_json():
    report = classification_report([0, 0, 0], np.array([[0.8, 0.2], [0.6, 0.4], [0.9, 0.1]]), ci=False)
    assert math.isnan(report["auc"])
    doc = _strict_loads(dumps_strict(report, indent=1))
    assert doc["auc"] is None and "auc" in doc["nulls"]
    with pytest.raises(ValueError):
        json.dumps(report, allow_nan=False)  # what a plain dump would have written: bare NaN
