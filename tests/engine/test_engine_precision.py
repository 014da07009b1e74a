"""precision=auto never picks emulated bf16 on a CPU (it is far slower than fp32 there)."""

from __future__ import annotations

import torch

from echocare.engine import distributed
from echocare.engine.distributed import cpu_native_bf16, resolve_precision


def test_auto_on_cpu_follows_native_bf16(monkeypatch):
    monkeypatch.setattr(distributed, "cpu_native_bf16", lambda: False)
    assert resolve_precision("auto", "cpu") == "no"
    monkeypatch.setattr(distributed, "cpu_native_bf16", lambda: True)
    assert resolve_precision("auto", "cpu") == ("bf16" if distributed.bf16_supported("cpu") else "no")


def test_explicit_bf16_still_runs_without_native_support(monkeypatch, caplog):
    monkeypatch.setattr(distributed, "cpu_native_bf16", lambda: False)
    if distributed.bf16_supported("cpu"):
        assert resolve_precision("bf16", "cpu") == "bf16"
        assert "emulated" in caplog.text
    assert resolve_precision("fp32", "cpu") == "no"


def test_native_probe_matches_torch_cpuinfo():
    expected = bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    assert cpu_native_bf16() == expected
