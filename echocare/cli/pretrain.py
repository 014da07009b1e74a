"""``echocare pretrain``: SimMIM + hierarchical pretraining from a YAML recipe.

    echocare pretrain --config recipes/pretrain/debug.yaml --set data.shards=DIR --output-dir runs/x
    accelerate launch --multi_gpu --num_processes 8 -m echocare pretrain --config ... --resume auto
"""

from __future__ import annotations

import argparse
import signal

from echocare.cli._common import add_config_arguments, add_run_arguments, exit_code, load_config_or_report


def _help_config(args: argparse.Namespace) -> int:
    from echocare.config import PretrainConfig, format_config_help

    print("Config keys of `echocare pretrain` (YAML sections or --set KEY=VALUE):\n")
    print(format_config_help(PretrainConfig))
    return 0


def run(args: argparse.Namespace) -> int:
    """Load the config and run the pretraining job; exit 0 when finished, 143 when stopped by SIGTERM and 130 by
    SIGINT (a checkpoint was written; a second signal stops at once, with the same code and no checkpoint)."""
    if args.help_config:
        return _help_config(args)
    from echocare.config import PretrainConfig

    cfg = load_config_or_report(PretrainConfig, args.config, args.set or (), "pretrain")
    if cfg is None:
        return 2
    from echocare.jobs.pretrain import run_pretraining

    result = run_pretraining(cfg, args.output_dir, resume=args.resume)
    if result.interrupted:
        return exit_code(result.stop_signal or signal.SIGTERM)
    return 0


def register(subparsers) -> None:
    """Add the ``pretrain`` verb."""
    p = subparsers.add_parser(
        "pretrain",
        help="pretrain an encoder (SimMIM + hierarchical anatomy loss)",
        description="Pretrain an EchoCare model. Config = dataclass defaults <- --config YAML <- --set "
                    "overrides; see --help-config for every key. Works under `accelerate launch -m echocare`.",
    )
    add_config_arguments(p, "recipes/pretrain/echocare_swin_base.yaml", "train.max_steps=100")
    add_run_arguments(p, "runs/pretrain", auto_note=" (fresh start if none)")
    p.set_defaults(func=run)
