"""Benchmark: hierarchical loss (eq. 2-3) vs a dense N x N reference.

Ours gathers over the padded ancestor table (B, N, D) and propagates over descendants level by level
(O(B * edges)); the dense reference masks a (B, N, N) tensor with the ancestor/descendant matrices.
Each (implementation, N) point runs in a fresh subprocess so its peak resident memory is its own.

    .venv/bin/python bench/hier_loss.py --sizes 250 500 1000 2000 5000 10000 --dense-max 1000 --batch 256 \
        --out bench/results/hier_loss.md
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from echocare.losses import hierarchical_loss
from echocare.ontology import random_ontology


def dense_reference_loss(logits: torch.Tensor, targets: torch.Tensor, anc: torch.Tensor) -> torch.Tensor:
    """Eq. (2)-(3) with dense masks. anc: (N, N) bool, anc[i, u] = u in {i} ∪ ancestors(i)."""
    inf = torch.tensor(float("inf"), dtype=logits.dtype)
    ls_pos = torch.nn.functional.logsigmoid(logits)  # (B, N)
    ls_neg = torch.nn.functional.logsigmoid(-logits)
    log_p = torch.where(anc, ls_pos[:, None, :], inf).amin(-1)  # (B, N, N) -> (B, N)
    log_q = torch.where(anc.T, ls_neg[:, None, :], inf).amin(-1)  # descendants = transposed ancestors
    nll = -torch.where(targets == 1, log_p, torch.where(targets == 0, log_q, torch.zeros_like(log_p)))
    known = (targets != -1).sum().clamp_min(1)
    return nll.sum() / known


def _setup(n: int, batch: int, depth: int, seed: int):
    onto = random_ontology(n, depth=depth, seed=seed)
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(batch, n, generator=g)
    targets = torch.randint(-1, 2, (batch, n), generator=g).float()
    return onto, logits, targets


def run_point(impl: str, n: int, batch: int, depth: int, repeats: int, seed: int) -> dict:
    """Time forward+backward of one implementation; returns timings and peak RSS growth in MiB."""
    onto, logits, targets = _setup(n, batch, depth, seed)
    anc = None
    if impl == "dense":
        anc = torch.zeros(n, n, dtype=torch.bool)
        rows = torch.arange(n)[:, None].expand_as(onto.ancestor_index)
        anc[rows, onto.ancestor_index] = True
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    times = []
    value = 0.0
    for _ in range(repeats):
        x = logits.clone().requires_grad_()
        start = time.perf_counter()
        loss = hierarchical_loss(x, targets, onto) if impl == "ours" else dense_reference_loss(x, targets, anc)
        loss.backward()
        times.append(time.perf_counter() - start)
        value = loss.detach().item()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return {
        "impl": impl,
        "n": n,
        "edges": int((onto.parent_index >= 0).sum()),
        "depth": int(onto.ancestor_index.shape[1]),
        "median_ms": 1000 * statistics.median(times),
        "min_ms": 1000 * min(times),
        "peak_mib": max(0, peak - rss_before) / 1024,
        "loss": value,
    }


def _subprocess_point(impl: str, n: int, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, __file__, "--point", impl, str(n), "--batch", str(args.batch), "--depth", str(args.depth),
           "--repeats", str(args.repeats if impl == "ours" else args.dense_repeats), "--seed", str(args.seed),
           "--threads", str(args.threads)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[250, 500, 1000, 2000, 5000, 10000])
    parser.add_argument("--dense-max", type=int, default=1000, help="largest N for the dense reference")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--depth", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--dense-repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads per point")
    parser.add_argument("--out", type=Path, default=Path("bench/results/hier_loss.md"))
    parser.add_argument("--point", nargs=2, metavar=("IMPL", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    if args.point:
        impl, n = args.point[0], int(args.point[1])
        print(json.dumps(run_point(impl, n, args.batch, args.depth, args.repeats, args.seed)))
        return 0

    rows = []
    for n in args.sizes:
        for impl in ("ours", "dense"):
            if impl == "dense" and n > args.dense_max:
                continue
            row = _subprocess_point(impl, n, args)
            rows.append(row)
            print(f"{impl:5s} N={n:6d} {row['median_ms']:9.1f} ms  peak +{row['peak_mib']:8.1f} MiB  "
                  f"loss={row['loss']:.6f}")

    command = (
        f".venv/bin/python bench/hier_loss.py --sizes {' '.join(map(str, args.sizes))} --dense-max {args.dense_max} "
        f"--batch {args.batch} --depth {args.depth} --repeats {args.repeats} --threads {args.threads} --out {args.out}"
    )
    lines = [
        "# Hierarchical loss: forward + backward cost vs a dense N x N reference",
        "",
        f"Batch {args.batch}, random ontology of depth {args.depth} (`echocare.ontology.random_ontology`), random "
        "targets in {1, 0, -1}. Median wall time of forward+backward over repeats; peak = growth of the process's "
        "peak resident memory during the timed loop (each point in a fresh process).",
        "",
        f"Machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
        f"{args.threads} torch thread(s), CPU, float32, load average {os.getloadavg()[0]:.1f} at the end "
        "(shared machine: absolute times are noisy, the scaling is the point).",
        "",
        "| impl | N | edges | D | median ms | min ms | peak MiB | loss |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['impl']} | {r['n']} | {r['edges']} | {r['depth']} | {r['median_ms']:.1f} | {r['min_ms']:.1f} | "
            f"{r['peak_mib']:.0f} | {r['loss']:.6f} |"
        )
    ours = {r["n"]: r for r in rows if r["impl"] == "ours"}
    dense = {r["n"]: r for r in rows if r["impl"] == "dense"}
    common = sorted(set(ours) & set(dense))
    lines.append("")
    if common:
        n = common[-1]
        lines.append(
            f"At N = {n}: dense / ours = {dense[n]['median_ms'] / ours[n]['median_ms']:.0f}x time, "
            f"{dense[n]['peak_mib'] / max(ours[n]['peak_mib'], 1e-3):.0f}x memory; the loss values agree "
            f"(|diff| = {abs(dense[n]['loss'] - ours[n]['loss']):.1e}). Dense memory grows as B*N^2 "
            f"(about {4 * dense[n]['peak_mib'] / 1024:.0f} GiB extrapolated at N = {2 * n}), ours as B*N*D."
        )
    lines += ["", "Reproduce:", "", "```", command, "```", ""]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
