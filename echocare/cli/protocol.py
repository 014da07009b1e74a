"""``echocare protocol``: label efficiency x repeated seeds, summarised as mean ± std.

    echocare protocol --config recipes/finetune/classification.yaml --set data.root=DATA \\
        --set model.init=encoder.safetensors --fractions 0.1,0.2,0.5,1.0 --seeds 20 --output-dir runs/proto

Writes OUT/protocol.md (table), OUT/protocol.csv, OUT/protocol.json, OUT/label_efficiency.png and one
run directory per (fraction, seed); rerunning continues an interrupted protocol.
"""

from __future__ import annotations

import argparse
import signal
from pathlib import Path

from echocare.cli._common import exit_code
from echocare.cli.finetune import add_config_arguments, load_finetune_config, print_config_help


def _fractions(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"--fractions must be comma-separated numbers: {err}") from None
    bad = [v for v in values if not 0.0 < v <= 1.0]
    if not values or bad:
        raise argparse.ArgumentTypeError(f"--fractions must be in (0, 1], got {text!r}")
    return values


def run(args: argparse.Namespace) -> int:
    """Run every (fraction, seed) fine-tune and write the summary table and plot."""
    if args.help_config:
        return print_config_help()
    cfg = load_finetune_config(args, "protocol")
    if cfg is None:
        return 2
    from echocare.jobs.protocol import run_protocol

    res = run_protocol(cfg, args.output_dir, args.fractions, args.seeds)  # user errors: one line, exit 2 (cli)
    if res.get("interrupted"):
        return exit_code(res.get("stop_signal") or signal.SIGTERM)
    print((Path(args.output_dir) / "protocol.md").read_text())
    print("\n".join(res["files"]))
    return 0


def register(subparsers) -> None:
    """Add the ``protocol`` verb."""
    p = subparsers.add_parser(
        "protocol", help="label-efficiency and repeated-seed fine-tuning study (mean ± std table + plot)",
        description="Fine-tune on fractions of the training labels (group-aware subsets, fixed split seed) with "
                    "several seeds each; summarise as mean ± std (markdown, CSV, JSON) and a PNG plot.",
    )
    add_config_arguments(p)
    p.add_argument("--fractions", type=_fractions, default=[1.0], help="e.g. 0.1,0.2,0.5,1.0 (default 1.0)")
    p.add_argument("--seeds", type=int, default=20, help="runs per fraction, seeds 0..N-1 (report: 20)")
    p.add_argument("--output-dir", default="runs/protocol", help="protocol directory (default runs/protocol)")
    p.set_defaults(func=run)
