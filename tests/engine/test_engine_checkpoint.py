"""Checkpoint discovery: only complete checkpoints count; stale writes are cleaned; clear errors."""

from __future__ import annotations

import pytest

from echocare.engine.checkpoint import MARKER, STATE_FILE, CheckpointManager


def _make(root, name, complete=True):
    d = root / name
    d.mkdir(parents=True)
    (d / "model.safetensors").write_bytes(b"x")
    if complete:
        (d / STATE_FILE).write_text('{"step": 1}')
        (d / MARKER).write_text("1\n")
    return d


def test_latest_ignores_incomplete_and_tmp(tmp_path):
    root = tmp_path / "checkpoints"
    _make(root, "step-00000010")
    _make(root, "step-00000020")
    _make(root, "step-00000030", complete=False)  # marker never written
    _make(root, "tmp-step-00000040")
    mgr = CheckpointManager(root)
    assert [s for s, _ in mgr.checkpoints()] == [10, 20]
    assert mgr.resolve("auto").name == "step-00000020"
    assert mgr.resolve(tmp_path).name == "step-00000020"  # a run directory
    mgr.clean_stale()
    assert not (root / "tmp-step-00000040").exists() and (root / "step-00000030").exists()


def test_resolve_errors_and_fresh_start(tmp_path):
    mgr = CheckpointManager(tmp_path / "checkpoints")
    assert mgr.resolve(None) is None
    assert mgr.resolve("auto") is None  # nothing yet: fresh run
    bad = _make(tmp_path, "half", complete=False)
    with pytest.raises(FileNotFoundError, match="not a complete checkpoint"):
        mgr.resolve(bad)
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="no complete checkpoint"):
        mgr.resolve(tmp_path / "run")
