"""Machine facts every bench report starts with (cores, ISA flags, torch version, threads, load)."""

from __future__ import annotations

import os
import platform

import torch

FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "amx_int8")


def cpu_flags() -> list[str]:
    """The interesting ISA flags of this CPU (from /proc/cpuinfo; empty elsewhere)."""
    try:
        with open("/proc/cpuinfo") as f:
            line = next((ln for ln in f if ln.startswith("flags")), "")
    except OSError:
        return []
    have = set(line.split(":", 1)[-1].split())
    return [f for f in FLAGS if f in have]


def machine_line() -> str:
    """One markdown line: CPU model, cores (affinity / total), flags, torch, threads, load average."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            model = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), model)
    except OSError:
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (f"machine: {model}, {cores} cores usable of {os.cpu_count()}, flags {' '.join(cpu_flags()) or '-'}, "
            f"{gpu}; torch {torch.__version__}, intra-op threads {torch.get_num_threads()}, "
            f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, "
            f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}; 1-min load at start {load:.2f}")


def emit_report(lines: list[str], out: "str | os.PathLike[str] | None") -> None:
    """Print a bench report (markdown lines) and also write it to ``out`` when given."""
    from pathlib import Path

    report = "\n".join(lines)
    print(report)
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(report + "\n")
