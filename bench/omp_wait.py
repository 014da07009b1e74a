#!/usr/bin/env python
"""Check which OpenMP wait policy takes effect with this torch build: CPU burnt while the thread pool idles.

Each case runs in a fresh process: 20 times, one small parallel op (``exp`` of 256x256, 2 threads) then 10 ms
of sleep. With busy-waiting, the pool's threads spin through the sleep (about 10 ms of CPU per 10 ms idle);
with passive waiting they sleep (well under 1 ms). Cases: ``default`` (OMP_WAIT_POLICY unset),
``env-after`` (set in ``os.environ`` after ``import torch``: what a library call could still do) and
``env-before`` (set before ``import torch``, i.e. in the launching environment).

Run:  python bench/omp_wait.py
"""

from __future__ import annotations

import os
import subprocess
import sys

CHILD = r"""
import os, sys, time
mode = sys.argv[1]
if mode == "env-before":
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
import torch
if mode == "env-after":
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
torch.set_num_threads(2)
a = torch.randn(256, 256)
c0 = time.process_time()
for _ in range(20):
    a.exp()
    time.sleep(0.01)
print(f"{1000 * (time.process_time() - c0) / 20:.1f}")
"""


def main() -> int:
    """Print a markdown table: CPU ms burnt per 10 ms of idle pool, per case."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS")}
    import torch

    print(f"`python bench/omp_wait.py` — torch {torch.__version__}, ATen parallel backend: "
          f"{'OpenMP' if 'OpenMP' in torch.__config__.parallel_info() else 'other'}\n")
    print("| OMP_WAIT_POLICY=PASSIVE | CPU ms per 10 ms idle (2 threads) |\n|---|---:|")
    for mode in ("default", "env-after", "env-before"):
        out = subprocess.run([sys.executable, "-c", CHILD, mode], env=env, capture_output=True, text=True, check=True)
        print(f"| {mode} | {out.stdout.strip()} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
