"""``echocare quickstart``: phantom shards -> a few minutes of CPU pretraining -> exported encoder.

    echocare quickstart --output-dir quickstart

Writes ``OUT/phantom`` (shards), ``OUT/run`` (config.yaml, metrics.jsonl, checkpoints, PNGs) and
``OUT/encoder.safetensors``; prints where the reconstruction grid, loss curve and weights are.
Uses ``recipes/pretrain/debug.yaml`` when the repository is available, else the same settings from
:data:`echocare.config.recipes.DEBUG_OVERRIDES`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from echocare.cli._common import add_set_argument, load_config_or_report


def run(args: argparse.Namespace) -> int:
    """Build phantom shards, pretrain the debug model, export it, and print the artefacts."""
    from echocare.config import PretrainConfig
    from echocare.config.recipes import DEBUG_OVERRIDES, find_recipe

    out = Path(args.output_dir)
    shards = out / "phantom"
    recipe = find_recipe("pretrain/debug.yaml")
    base = [] if recipe is not None else list(DEBUG_OVERRIDES)
    overrides = base + [
        f"data.shards={shards}", f"train.max_steps={args.steps}", "train.ckpt_every=100",
        "train.image_every=100", "train.log_every=10", "optim.warmup_steps=20",
        "data.shuffle_buffer=256", "model.hie_weight=0.5",
        # the multi-scale decoder learns visible structure within a few hundred steps; the linear
        # SimMIM head of the 24-channel debug encoder only reaches the mean image in that time
        "model.decoder=progressive",
    ] + list(args.set or ())
    cfg = load_config_or_report(PretrainConfig, recipe, overrides, "quickstart")
    if cfg is None:
        return 2

    t0 = time.time()
    index_file = shards / "index.json"
    if not (index_file.is_file() and json.loads(index_file.read_text()).get("total") == args.images):
        from echocare.data.phantom import write_phantom_shards

        print(f"[1/3] writing {args.images} phantom ultrasound images to {shards} ...", flush=True)
        write_phantom_shards(shards, args.images, seed=cfg.train.seed, image_size=cfg.model.img_size,
                             shard_max_count=max(1, args.images // 4))
    else:
        print(f"[1/3] phantom shards already in {shards}", flush=True)

    from echocare.engine.pretrain import run_pretraining

    run_dir = out / "run"
    print(f"[2/3] pretraining {cfg.model.name} for {cfg.train.max_steps} steps on "
          f"{cfg.model.img_size}px images (recipe: {recipe or 'built-in debug settings'}) ...", flush=True)
    result = run_pretraining(cfg, run_dir, resume="auto")
    if result.interrupted:
        print(f"interrupted at step {result.step}; rerun the same command to continue", file=sys.stderr)
        return 143

    from echocare.engine.export import export_encoder

    weights = out / "encoder.safetensors"
    print("[3/3] exporting the encoder ...", flush=True)
    export_encoder(run_dir, weights)

    from echocare.engine.logging_utils import read_metrics

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
