"""``echocare pretrain``: SimMIM + hierarchical pretraining from a YAML recipe.

    echocare pretrain --config recipes/pretrain/debug.yaml --set data.shards=DIR --output-dir runs/x
    accelerate launch --multi_gpu --num_processes 8 -m echocare pretrain --config ... --resume auto
"""

from __future__ import annotations

import argparse
import sys


def _help_config(args: argparse.Namespace) -> int:
    from echocare.config import PretrainConfig, format_config_help

    print("Config keys of `echocare pretrain` (YAML sections or --set KEY=VALUE):\n")
    print(format_config_help(PretrainConfig))
    return 0


def run(args: argparse.Namespace) -> int:
    """Load the config and run the engine; exit 0 when finished, 143/130 when stopped by a signal."""
    if args.help_config:
        return _help_config(args)
    from echocare.config import ConfigError, PretrainConfig, load_config

    try:
        cfg = load_config(PretrainConfig, args.config, args.set or ())
    except (ConfigError, FileNotFoundError) as err:
        print(f"echocare pretrain: error: {err}", file=sys.stderr)
        return 2
    from echocare.engine.pretrain import run_pretraining

    result = run_pretraining(cfg, args.output_dir, resume=args.resume)
    if result.interrupted:
        return 143
    return 0


def register(subparsers) -> None:
    """Add the ``pretrain`` verb."""
    p = subparsers.add_parser(
        "pretrain",
        help="pretrain an encoder (SimMIM + hierarchical anatomy loss)",
        description="Pretrain an EchoCare model. Config = dataclass defaults <- --config YAML <- --set "
                    "overrides; see --help-config for every key. Works under `accelerate launch -m echocare`.",
    )
    p.add_argument("--config", help="YAML recipe (e.g. recipes/pretrain/echocare_swin_base.yaml)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a config key, repeatable (e.g. --set train.max_steps=100)")
    p.add_argument("--output-dir", default="runs/pretrain", help="run directory (default runs/pretrain)")
    p.add_argument("--resume", default=None, metavar="auto|PATH",
                   help="'auto' = newest complete checkpoint in --output-dir (fresh start if none); "
                        "or a checkpoint / run directory")
    p.add_argument("--help-config", action="store_true", help="list every config key with type, default, help")
    p.set_defaults(func=run)
