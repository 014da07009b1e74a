#!/usr/bin/env python
"""Benchmark ``echocare shards build``: images/s per core at growing input counts, and the memory it keeps.

Inputs are generated PNGs (``--input-size`` px, all distinct: a random low-frequency tissue pattern times
speckle inside a fan) written once into nested folders, so the 1k set is part of the 10k set and so on. Each
size is built from scratch in a fresh subprocess (``build_shards`` with ``--workers`` processes, exact +
near-duplicate dedup on, ``--format``), which reports wall time, CPU time of itself and its workers, peak RSS
and the size of the dedup state kept for the whole build (exact-hash map, key set, near-duplicate index:
a deep ``sys.getsizeof`` walk, :func:`dedup_bytes`, taken after the build).

Goals (issue 12): >= 200 img/s per core; per-core throughput at the largest size >= 0.9x of the smallest;
memory flat (peak RSS growth per 1k inputs small and constant).

Run:  python bench/shard_build.py --sizes 1000,10000,100000 --out bench/results/shard_build.md
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import emit_report, machine_line  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="1000,10000,100000", help="comma list of input counts")
    p.add_argument("--max", type=int, default=None, help="drop sizes above this (quick runs)")
    p.add_argument("--input-size", type=int, default=256, help="side of the generated PNG inputs")
    p.add_argument("--image-size", type=int, default=256, help="manifest image_size (output shorter side)")
    p.add_argument("--workers", type=int, default=1, help="build_shards worker processes")
    p.add_argument("--format", default="png", help="png | jpeg | raw-zstd")
    p.add_argument("--near", type=float, default=0.95, help="near-duplicate similarity (0 = off)")
    p.add_argument("--workdir", default=None, help="where inputs and shards go (default: system temp)")
    p.add_argument("--out", type=Path, default=None, help="also write the markdown report here")
    p.add_argument("--child", nargs=2, default=None, help=argparse.SUPPRESS)  # internal: manifest, out dir
    return p.parse_args(argv)


def make_input(rng: np.random.Generator, side: int) -> np.ndarray:
    """A distinct B-mode-like image: upsampled random tissue x Rayleigh speckle, zero outside a fan."""
    coarse = rng.uniform(40, 200, size=(8, 8)).astype(np.float32)
    tissue = np.kron(coarse, np.ones((side // 8 + 1, side // 8 + 1), np.float32))[:side, :side]
    img = tissue * rng.rayleigh(0.8, size=(side, side)).astype(np.float32)
    y, x = np.mgrid[0:side, 0:side]
    fan = np.abs(np.arctan2(x - side / 2, y + side * 0.1)) < 0.7
    return np.clip(img * fan, 0, 255).astype(np.uint8)


def write_inputs(root: Path, sizes: list[int], side: int) -> list[str]:
    """Nested folders part-0 (sizes[0] images), part-1 (sizes[1] - sizes[0]), ...; returns the folder names."""
    rng = np.random.default_rng(0)
    parts, done = [], 0
    for j, n in enumerate(sizes):
        folder = root / f"part-{j}"
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(done, n):
            Image.fromarray(make_input(rng, side)).save(folder / f"img{i:07d}.png", compress_level=1)
        parts.append(folder.name)
        done = n
    return parts


def dedup_bytes(obj: object, seen: set[int] | None = None) -> int:
    """Deep ``sys.getsizeof`` of dicts / lists / sets / objects (the dedup state), each object once."""
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return 0
    seen.add(id(obj))
    size = sys.getsizeof(obj)
    if isinstance(obj, dict):
        size += sum(dedup_bytes(k, seen) + dedup_bytes(v, seen) for k, v in obj.items())
    elif isinstance(obj, (list, tuple, set, frozenset)):
        size += sum(dedup_bytes(v, seen) for v in obj)
    elif hasattr(obj, "__dict__"):
        size += dedup_bytes(vars(obj), seen)
    return size


def child(manifest: str, out: str, workers: int, fmt: str) -> None:
    """Build once in this fresh process and print a JSON line of measurements."""
    from echocare.data import pipeline
    from echocare.data.build import build_shards

    captured = {}
    original = pipeline._State

    class _Measured(original):  # keep a handle on the build's dedup state to size it afterwards
        def __init__(self, *a, **kw):
            super().__init__(*a, **kw)
            captured["state"] = self

    pipeline._State = _Measured
    t0, c0 = time.perf_counter(), time.process_time()
    index = build_shards(manifest, out, workers=workers, image_format=fmt)
    wall = time.perf_counter() - t0
    own = time.process_time() - c0
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    state = captured["state"]
    parts = {name: dedup_bytes(getattr(state, name)) for name in ("exact", "keys", "near") if hasattr(state, name)}
    shard_bytes = sum(s["bytes"] for s in index["shards"])
    print(json.dumps({"total": index["total"], "rejected": index["rejected"], "wall": wall,
                      "cpu": own + kids.ru_utime + kids.ru_stime,
                      "maxrss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "dedup_bytes": sum(parts.values()), "dedup_parts": parts, "shard_bytes": shard_bytes}))


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print (and optionally write) a markdown report."""
    args = parse_args(argv)
    if args.child:
        child(*args.child, workers=args.workers, fmt=args.format)
        return 0
    sizes = sorted(int(s) for s in args.sizes.split(",") if s.strip())
    if args.max:
        sizes = [s for s in sizes if s <= args.max] or [args.max]
    header = machine_line()
    rows = []
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    with tempfile.TemporaryDirectory(prefix="echocare-shardbuild-", dir=args.workdir) as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        parts = write_inputs(root / "inputs", sizes, args.input_size)
        gen_s = time.perf_counter() - t0
        for j, n in enumerate(sizes):
            dataset = {"name": "gen", "root": str(root / "inputs"), "kind": "images", "label": "thorax/heart",
                       "include": [f"{p}/*.png" for p in parts[: j + 1]]}
            if args.near > 0:
                dataset["near_duplicates"] = args.near
            manifest = root / f"manifest-{n}.yaml"
            manifest.write_text(yaml.safe_dump({"image_size": args.image_size, "datasets": [dataset]}))
            proc = subprocess.run([sys.executable, __file__, "--workers", str(args.workers), "--format", args.format,
                                   "--child", str(manifest), str(root / f"shards-{n}")],
                                  capture_output=True, text=True, env=env, cwd=str(ROOT))
            if proc.returncode != 0:
                raise RuntimeError(f"build of {n} inputs failed:\n{proc.stderr[-3000:]}")
            res = json.loads(proc.stdout.strip().splitlines()[-1])
            rows.append((n, res))
    base = rows[0][1]["total"] / rows[0][1]["cpu"]
    cmd = "python bench/shard_build.py " + " ".join(argv if argv is not None else sys.argv[1:])
    lines = [f"`{cmd.strip()}`", "", header, "",
             f"inputs: generated {args.input_size}² PNGs (generation {gen_s:.0f} s, not counted); output "
             f"{args.format}, image_size {args.image_size}, exact + near-duplicate dedup "
             f"({args.near if args.near > 0 else 'off'}), {args.workers} worker process(es). "
             "Per core = images / CPU-seconds of the build and its workers. Goals: >= 200 img/s per core; "
             "largest / smallest per-core >= 0.9; memory flat.", "",
             "| inputs | written | rejected | wall s | img/s wall | img/s per core | per core vs smallest | "
             "peak RSS MiB | dedup state MiB | dedup bytes per input |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for n, r in rows:
        per_core = r["total"] / r["cpu"]
        lines.append(f"| {n:,} | {r['total']:,} | {sum(r['rejected'].values()):,} | {r['wall']:.1f} | "
                     f"{r['total'] / r['wall']:.0f} | {per_core:.0f} | {per_core / base:.2f} | "
                     f"{r['maxrss_mib']:.0f} | {r['dedup_bytes'] / 2**20:.1f} | {r['dedup_bytes'] / max(n, 1):.0f} |")
    emit_report(lines, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
