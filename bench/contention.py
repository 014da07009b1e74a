#!/usr/bin/env python
"""Benchmark: do concurrent trainings share the machine? 1 run alone, then k identical runs at once.

Each run is ``python -m echocare pretrain`` of ``recipes/pretrain/debug.yaml`` (debug Swin, 64 px) on the same
phantom shards, in its own subprocess and run directory. A run's throughput is images / wall-seconds over its
``metrics.jsonl`` windows after the first (the first holds start-up and the first compiled kernels).
Reported per environment policy: solo img/s, each concurrent run's img/s and its ratio to solo (fair share is
1/k; the goal for k=2 is >= 0.4 each).

Policies (environment of the child processes; the trainer itself sets intra-op threads with
``echocare.engine.threads``): ``shared`` = as given (OMP_NUM_THREADS unset: the default, where concurrent
trainings find each other through ``echocare.engine.thread_share`` and split the cores), ``noshare`` = as
given with ``train.share_threads=false`` (each run takes every core: the behaviour before thread sharing),
``passive`` = ``OMP_WAIT_POLICY=PASSIVE`` (no busy-wait spinning at OpenMP barriers, read by libgomp at
``import torch``), ``split`` = ``OMP_NUM_THREADS = cores // k`` for the concurrent runs (what a scheduler
that knows about the other job would give).

Run:  python bench/contention.py --steps 60 --out bench/results/contention.md
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import emit_report, machine_line  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
POLICIES = ("shared", "noshare", "passive", "split")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=60, help="training steps per run")
    p.add_argument("--log-every", type=int, default=5)
    p.add_argument("--concurrent", type=int, default=2, help="runs at once in the shared phase")
    p.add_argument("--policies", default="shared,noshare,passive,split", help=f"comma list of {', '.join(POLICIES)}")
    p.add_argument("--n-images", type=int, default=256)
    p.add_argument("--set", action="append", default=[], help="extra --set key=value for every run")
    p.add_argument("--out", type=Path, default=None)
    return p.parse_args(argv)


def child_env(policy: str, k: int) -> dict[str, str]:
    """Environment of one training subprocess under ``policy`` with ``k`` runs at once."""
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    for name in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "LOCAL_WORLD_SIZE"):
        env.pop(name, None)
    if policy == "passive":
        env["OMP_WAIT_POLICY"] = "PASSIVE"
    elif policy == "split":
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        env["OMP_NUM_THREADS"] = str(max(1, cores // k))
    return env


def throughput(run_dir: Path) -> float:
    """Images per second over the metrics windows after the first."""
    rows = [json.loads(ln) for ln in (run_dir / "metrics.jsonl").read_text().splitlines() if ln.strip()]
    rows = [r for r in rows if "img_per_s" in r][1:]
    if not rows:
        raise RuntimeError(f"{run_dir}: no metrics windows after the first; raise --steps")
    # each window holds the same number of steps and images: the mean of img/s weighted by time
    return len(rows) / sum(1.0 / r["img_per_s"] for r in rows)


def train_alone(verb: str, recipe: Path, out: Path, sets: list[str]) -> float:
    """``python -m echocare VERB --config RECIPE --output-dir OUT --set ...`` in a subprocess; return its img/s."""
    cmd = [sys.executable, "-m", "echocare", verb, "--config", str(recipe), "--output-dir", str(out)]
    for s in sets:
        cmd += ["--set", s]
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run(cmd, env=env, cwd=str(ROOT), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                          check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{verb} in {out} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return throughput(out)


def run_batch(k: int, policy: str, shards: Path, work: Path, args: argparse.Namespace) -> list[float]:
    """Start ``k`` identical trainings at once; return each one's img/s."""
    procs = []
    for i in range(k):
        out = work / f"{policy}-k{k}-{i}"
        cmd = [sys.executable, "-m", "echocare", "pretrain", "--config", str(ROOT / "recipes/pretrain/debug.yaml"),
               "--output-dir", str(out), "--set", f"data.shards={shards}", "--set", f"train.max_steps={args.steps}",
               "--set", f"train.log_every={args.log_every}", "--set", f"train.ckpt_every={args.steps}",
               "--set", f"train.image_every={10 * args.steps}"]
        for extra in [*args.set, *(["train.share_threads=false"] if policy == "noshare" else [])]:
            cmd += ["--set", extra]
        procs.append((out, subprocess.Popen(cmd, env=child_env(policy, k), cwd=str(ROOT),
                                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)))
    results = []
    for out, proc in procs:
        _, err = proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"training in {out} failed (exit {proc.returncode}):\n{err[-3000:]}")
        results.append(throughput(out))
    return results


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print (and optionally write) a markdown report."""
    args = parse_args(argv)
    policies = [p.strip() for p in args.policies.split(",") if p.strip()]
    bad = [p for p in policies if p not in POLICIES]
    if bad:
        raise SystemExit(f"unknown policies {bad}; valid: {', '.join(POLICIES)}")
    header = machine_line()
    rows = []
    with tempfile.TemporaryDirectory(prefix="echocare-contention-") as tmp:
        work = Path(tmp)
        shards = work / "shards"
        subprocess.run([sys.executable, "-m", "echocare", "shards", "phantom", "--out", str(shards), "--n",
                        str(args.n_images), "--size", "64", "--shard-max-count", "64"], check=True, cwd=str(ROOT),
                       env=child_env("shared", 1), stdout=subprocess.DEVNULL)
        for policy in policies:
            t0 = time.perf_counter()
            solo = run_batch(1, policy, shards, work, args)[0]
            both = run_batch(args.concurrent, policy, shards, work, args)
            rows.append((policy, solo, both, time.perf_counter() - t0))
    cmd = "python bench/contention.py " + " ".join(argv if argv is not None else sys.argv[1:])
    k = args.concurrent
    lines = [f"`{cmd.strip()}`", "", header, "",
             f"debug pretraining (recipes/pretrain/debug.yaml, {args.steps} steps, img/s after the first "
             f"{args.log_every}-step window); {k} runs at once vs alone; fair share {1 / k:.2f}, goal >= 0.4 for k=2",
             "", f"| policy | solo img/s | each of {k} concurrent img/s | ratio to solo (each) | min ratio | wall s |",
             "|---|---:|---|---|---:|---:|"]
    for policy, solo, both, wall in rows:
        ratios = [b / solo for b in both]
        lines.append(f"| {policy} | {solo:.1f} | {' / '.join(f'{b:.1f}' for b in both)} | "
                     f"{' / '.join(f'{r:.2f}' for r in ratios)} | {min(ratios):.2f} | {wall:.0f} |")
    emit_report(lines, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
