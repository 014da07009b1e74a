"""Fine-tune run files: metrics.json and friends are strict JSON (NaN -> null with a reason)."""

import json

import pytest

from echocare.jobs.finetune import write_json


def test_metric_files_are_strict_json(tmp_path):
    write_json(tmp_path / "metrics.json", {"headline": {"auc": float("nan"), "accuracy": 0.5}})
    doc = json.loads((tmp_path / "metrics.json").read_text(),
                     parse_constant=lambda c: pytest.fail(f"non-strict JSON constant {c}"))
    assert doc["headline"] == {"auc": None, "accuracy": 0.5}
    assert doc["nulls"] == {"headline.auc": "undefined: the evaluated set holds a single class"}
