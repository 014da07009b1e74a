"""``echocare finetune``: fine-tune a pretrained encoder with a task head.

    echocare finetune --config recipes/finetune/classification.yaml --set data.root=DATA \\
        --set model.init=encoder.safetensors --output-dir runs/cls
    accelerate launch --multi_gpu --num_processes 8 -m echocare finetune --config ... --resume auto

Writes RUN/metrics.json (validation metrics), RUN/model.safetensors (encoder + head), RUN/config.yaml,
RUN/metrics.jsonl, RUN/data_report.json (split sizes, skipped files) and checkpoints.
"""

from __future__ import annotations

import argparse
import json
import signal

from echocare.cli import _common


def add_config_arguments(p: argparse.ArgumentParser) -> None:
    """``--config``, repeated ``--set`` and ``--help-config`` (shared with ``echocare protocol``)."""
    _common.add_config_arguments(p, "recipes/finetune/segmentation.yaml", "data.root=DIR")


def load_finetune_config(args: argparse.Namespace, verb: str):
    """The validated FinetuneConfig, or None after printing the error (exit code 2)."""
    from echocare.config.finetune import FinetuneConfig, budget_overrides

    return _common.load_config_or_report(FinetuneConfig, args.config, budget_overrides(args.set or ()), verb)


def print_config_help() -> int:
    """Print every fine-tuning config key."""
    from echocare.config import config_to_dict, describe_config
    from echocare.config.finetune import FinetuneConfig

    actual = config_to_dict(FinetuneConfig())  # fine-tuning defaults of the shared train/optim sections
    print("Config keys of `echocare finetune` / `echocare protocol` (YAML sections or --set KEY=VALUE):\n")
    rows = describe_config(FinetuneConfig)
    width = max(len(r[0]) for r in rows)
    for key, tp, _, help_text in rows:
        value = actual
        for part in key.split("."):
            value = value[part]
        print(f"  {key:<{width}}  {help_text}")
        print(f"  {'':<{width}}  type {tp}, default {json.dumps(value)}")
    return 0


def run(args: argparse.Namespace) -> int:
    """Load the config, fine-tune, print the headline validation metrics."""
    if args.help_config:
        return print_config_help()
    cfg = load_finetune_config(args, "finetune")
    if cfg is None:
        return 2
    from echocare.jobs.finetune import run_finetune

    summary = run_finetune(cfg, args.output_dir, resume=args.resume)  # user errors: one line, exit 2 (cli)
    if summary.get("interrupted"):
        return _common.exit_code(summary.get("stop_signal") or signal.SIGTERM)
    if summary:
        from echocare.metrics.jsonsafe import dumps_strict  # NaN -> null (strict JSON)

        print(dumps_strict({"output_dir": args.output_dir, "step": summary["step"], **summary["headline"]}))
    return 0


def register(subparsers) -> None:
    """Add the ``finetune`` verb."""
    p = subparsers.add_parser(
        "finetune",
        help="fine-tune an encoder on a labeled task (classification, segmentation, detection, ...)",
        description="Fine-tune a backbone + task head. Config = defaults <- --config YAML <- --set overrides; "
                    "see --help-config. Works under `accelerate launch -m echocare`.",
    )
    add_config_arguments(p)
    _common.add_run_arguments(p, "runs/finetune")
    p.set_defaults(func=run)
