#!/usr/bin/env python
"""Benchmark: how fast does a pretrain recipe run on this machine, per loader-worker count and batch?

Each configuration is ``python -m echocare pretrain --config RECIPE`` for ``--steps`` steps, alone, in its own
subprocess and run directory, with ``data.num_workers`` and ``train.batch_size`` overridden (every other setting
is the recipe's). Throughput is images / wall-seconds over the ``metrics.jsonl`` windows after the first (start-up
and first kernels excluded). The report gives each configuration's img/s, its ratio to the recipe's own setting
measured in the same run, and the wall time of the recipe's image budget (``train.max_steps x train.batch_size``
images) at that speed. Changing the batch changes the optimisation, not only the speed: it is a recipe decision
that the transfer benchmark has to back (docs/results.md).

Data: ``--shards`` (e.g. the transfer benchmark's HC18 pool, ``runs/transfer/data/shards``), or by default
``--n-images`` phantom B-mode images at 256 px (HC18's stored size) written to a temp dir.

Run:  python bench/recipe_speed.py --workers 0,1,2 --batches 32,64 --out bench/results/recipe_speed.md
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from contention import train_alone  # noqa: E402
from machine import emit_report, machine_line  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--recipe", type=Path, default=ROOT / "recipes/pretrain/small.yaml")
    p.add_argument("--shards", type=Path, default=None, help="shard folder (default: phantom shards)")
    p.add_argument("--n-images", type=int, default=800, help="phantom images when --shards is not given")
    p.add_argument("--workers", default="0,1,2", help="comma list of data.num_workers")
    p.add_argument("--batches", default="", help="comma list of train.batch_size (default: the recipe's)")
    p.add_argument("--steps", type=int, default=300, help="training steps per configuration")
    p.add_argument("--log-every", type=int, default=10)
    p.add_argument("--set", action="append", default=[], help="extra --set key=value for every run")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    for name, low in (("workers", 0), ("batches", 1)):  # parsed here into lists of ints
        text = getattr(args, name)
        try:
            values = [int(t) for t in text.split(",") if t.strip()]
        except ValueError:
            p.error(f"--{name}: expected a comma list of integers, got {text!r}")
        if any(v < low for v in values):
            p.error(f"--{name}: out of range in {text!r}")
        setattr(args, name, values)
    if not args.recipe.is_file():
        p.error(f"--recipe: no such file: {args.recipe}")
    if args.shards is not None and not args.shards.exists():
        p.error(f"--shards: no such path: {args.shards}")
    return args


def recipe_budget(recipe: Path, sets: list[str]) -> tuple[int, int, int]:
    """The recipe's (data.num_workers, train.batch_size, train.max_steps) after ``sets``."""
    from echocare.config import PretrainConfig, load_config

    cfg = load_config(PretrainConfig, recipe, sets)
    return cfg.data.num_workers, cfg.train.batch_size, cfg.train.max_steps


def run_one(recipe: Path, shards: Path, out: Path, workers: int, batch: int, args: argparse.Namespace) -> float:
    """Train ``--steps`` steps alone with ``workers`` loader workers at ``batch``; return img/s."""
    sets = [f"data.shards={shards}", *args.set, f"data.num_workers={workers}", f"train.batch_size={batch}",
            f"train.max_steps={args.steps}", f"train.log_every={args.log_every}", f"train.ckpt_every={args.steps}",
            f"train.image_every={10 * args.steps}", "train.progress=false"]
    return train_alone("pretrain", recipe, out, sets)


def main(argv: list[str] | None = None) -> int:
    """Run every configuration and print (and optionally write) a markdown report."""
    args = parse_args(argv)
    rec_workers, rec_batch, rec_steps = recipe_budget(args.recipe, [*args.set, "data.shards=unused"])
    workers = args.workers or [rec_workers]
    batches = args.batches or [rec_batch]
    configs = [(w, b) for b in batches for w in workers]
    if (rec_workers, rec_batch) not in configs:
        configs.insert(0, (rec_workers, rec_batch))  # the reference every ratio is taken against
    header = machine_line()
    speed = {}
    with tempfile.TemporaryDirectory(prefix="echocare-recipe-speed-") as tmp:
        work = Path(tmp)
        shards = args.shards
        if shards is None:
            shards = work / "shards"
            subprocess.run([sys.executable, "-m", "echocare", "shards", "phantom", "--out", str(shards), "--n",
                            str(args.n_images), "--size", "256", "--shard-max-count", "128"], check=True,
                           cwd=str(ROOT), stdout=subprocess.DEVNULL)
        for w, b in configs:
            speed[(w, b)] = run_one(args.recipe, shards, work / f"w{w}-b{b}", w, b, args)
    ref = speed[(rec_workers, rec_batch)]
    images = rec_steps * rec_batch
    cmd = "python bench/recipe_speed.py " + " ".join(argv if argv is not None else sys.argv[1:])
    data = f"shards {args.shards}" if args.shards else f"{args.n_images} phantom images at 256 px"
    lines = [f"`{cmd.strip()}`", "", header, "",
             f"recipe `{args.recipe.relative_to(ROOT) if args.recipe.is_relative_to(ROOT) else args.recipe}` "
             f"(num_workers {rec_workers}, batch {rec_batch}, {rec_steps} steps = {images} images); {data}; "
             f"{args.steps} steps per configuration, each alone, img/s after the first {args.log_every}-step window",
             "", "| data.num_workers | train.batch_size | img/s | vs the recipe's setting | "
             f"minutes for {images} images |", "|---:|---:|---:|---:|---:|"]
    for (w, b), v in speed.items():
        mark = " (recipe)" if (w, b) == (rec_workers, rec_batch) else ""
        lines.append(f"| {w}{mark} | {b} | {v:.1f} | {v / ref:.2f}x | {images / v / 60:.1f} |")
    emit_report(lines, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
