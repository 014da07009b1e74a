"""Benchmark: synthetic B-mode phantom shards per second (``echocare shards phantom``).

Times ``write_phantom_shards`` (phantom generation + PNG encoding + tar writing + index) for N images
at one size, best of R runs, each into a fresh temp dir. This replaces the wall-clock assertion that
used to sit in tests/data/test_data_phantom.py (tests check behaviour; timing lives here).

    .venv/bin/python bench/phantom_shards.py --n 200 --size 128 --repeats 3 --out bench/results/phantom_shards.md
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import torch

from echocare.data.phantom import write_phantom_shards


def main() -> int:
    """Run the benchmark; print the result and append it to ``--out`` as markdown."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=200, help="phantom images per run")
    parser.add_argument("--size", type=int, default=128, help="image side in pixels")
    parser.add_argument("--repeats", type=int, default=3, help="runs; the best is reported")
    parser.add_argument("--out", type=Path, default=None, help="markdown file to append the result to")
    args = parser.parse_args()
    torch.set_num_threads(1)
    times = []
    for r in range(args.repeats):
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            index = write_phantom_shards(Path(tmp) / "ph", args.n, seed=r, image_size=args.size, shard_max_count=64)
            times.append(time.perf_counter() - t0)
            assert index["total"] == args.n
    best = min(times)
    line = (f"| {args.n} | {args.size} | {best:.2f} | {args.n / best:.0f} | "
            f"{platform.processor() or platform.machine()}, torch {torch.__version__} |")
    print(f"{args.n} phantoms at {args.size}px: best {best:.2f} s of {args.repeats} ({args.n / best:.0f} img/s)")
    if args.out is not None:
        new = not args.out.exists()
        with args.out.open("a") as fh:
            if new:
                fh.write("# Phantom shards benchmark\n\nCommand: `python bench/phantom_shards.py "
                         f"--n {args.n} --size {args.size} --repeats {args.repeats} --out {args.out}`\n\n"
                         "| N | size | best s | img/s | machine |\n|---|---|---|---|---|\n")
            fh.write(line + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
