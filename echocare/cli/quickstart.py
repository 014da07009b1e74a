"""``echocare quickstart``: phantom shards -> a few minutes of CPU pretraining -> exported encoder.

    echocare quickstart --output-dir quickstart

Writes ``OUT/phantom`` (shards), ``OUT/run`` (config.yaml, metrics.jsonl, checkpoints, PNGs) and
``OUT/encoder.safetensors``; prints where the reconstruction grid, loss curve and weights are.
Uses ``recipes/pretrain/debug.yaml`` when the repository is available, else the same settings from
:data:`echocare.config.recipes.DEBUG_OVERRIDES`.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path

from echocare.cli._common import add_set_argument, exit_code, load_config_or_report


def run(args: argparse.Namespace) -> int:
    """Build phantom shards, pretrain the debug model, export it, and print the artefacts."""
    from echocare.config import PretrainConfig
    from echocare.config.recipes import DEBUG_OVERRIDES, find_recipe
    from echocare.engine.logging_utils import read_metrics
    from echocare.jobs.quickstart import quickstart_overrides, run_quickstart

    out = Path(args.output_dir)
    recipe = find_recipe("pretrain/debug.yaml")
    base = [] if recipe is not None else list(DEBUG_OVERRIDES)
    overrides = base + quickstart_overrides(out / "phantom", args.steps) + list(args.set or ())
    cfg = load_config_or_report(PretrainConfig, recipe, overrides, "quickstart")
    if cfg is None:
        return 2
    print(f"recipe: {recipe or 'built-in debug settings'}", flush=True)
    t0 = time.time()
    result = run_quickstart(cfg, out, args.images, announce=lambda msg: print(msg, flush=True))
    if result.weights is None:
        print(f"interrupted at step {result.fit.step}; rerun the same command to continue", file=sys.stderr)
        return exit_code(result.fit.stop_signal or signal.SIGTERM)
    run_dir, weights = result.run_dir, result.weights
    records = read_metrics(run_dir / "metrics.jsonl")
    first, last = (records[0], records[-1]) if records else ({}, {})
    print(f"\ndone in {time.time() - t0:.0f} s")
    if records:
        print(f"  loss          {first.get('loss', float('nan')):.4f} (step {first['step']}) -> "
              f"{last.get('loss', float('nan')):.4f} (step {last['step']})")
    print(f"  recon grid    {run_dir / 'recon_latest.png'}")
    print(f"  loss curve    {run_dir / 'loss_curve.png'}")
    print(f"  metrics       {run_dir / 'metrics.jsonl'}  (TensorBoard: {run_dir / 'tensorboard'})")
    print(f"  checkpoints   {run_dir / 'checkpoints'}")
    print(f"  encoder       {weights}")
    print(f"\nload it:  python -c \"import echocare; m = echocare.load_backbone('{weights}'); print(m)\"")
    return 0


def register(subparsers) -> None:
    """Add the ``quickstart`` verb."""
    p = subparsers.add_parser(
        "quickstart",
        help="phantom data -> short CPU pretraining -> exported encoder (a few minutes)",
        description="End-to-end smoke run on synthetic phantom ultrasound: builds shards, pretrains the "
                    "debug model on CPU (a few minutes on 2 cores), exports encoder.safetensors and prints "
                    "where the reconstruction grid and loss curve are. Rerunning resumes/reuses.",
    )
    p.add_argument("--output-dir", default="quickstart", help="output folder (default ./quickstart)")
    p.add_argument("--steps", type=int, default=600, help="optimizer steps (default 600)")
    p.add_argument("--images", type=int, default=512, help="phantom images to generate (default 512)")
    add_set_argument(p, "extra config override, repeatable")
    p.set_defaults(func=run)
