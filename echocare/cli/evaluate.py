"""``echocare evaluate``: recompute a fine-tuned model's metrics.

    echocare evaluate --checkpoint runs/cls                     # its validation split = metrics.json
    echocare evaluate --checkpoint runs/cls/model.safetensors --data TEST_ROOT --out test_metrics.json
"""

from __future__ import annotations

import argparse


def run(args: argparse.Namespace) -> int:
    """Rebuild the model, evaluate, write and print the metrics."""
    from echocare.jobs.evaluate import evaluate_checkpoint

    device = args.device or ("cuda" if _cuda() else "cpu")
    # user errors (bad checkpoint, data, --set): one line, exit 2 (echocare.cli)
    doc = evaluate_checkpoint(args.checkpoint, args.data, args.set or (), out=args.out, device=device)
    from echocare.metrics.jsonsafe import dumps_strict  # NaN -> null (strict JSON)

    print(dumps_strict({"split": doc["split"], "n_items": doc["n_items"], **doc["headline"]}))
    if args.out:
        print(f"metrics written to {args.out}")
    return 0


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def register(subparsers) -> None:
    """Add the ``evaluate`` verb."""
    p = subparsers.add_parser(
        "evaluate", help="recompute the metrics of a fine-tuned model on its validation split or any dataset",
        description="Evaluate a fine-tuned model (run directory or its model.safetensors). Without --data the "
                    "run's own validation split is used, reproducing RUN/metrics.json.",
    )
    p.add_argument("--checkpoint", required=True, help="fine-tune run directory or model.safetensors")
    p.add_argument("--data", default=None, help="dataset root in the training format (default: the run's val split)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="config override, e.g. data.csv=test.csv or eval.batch_size=64")
    p.add_argument("--out", default=None, help="write the metrics JSON here")
    p.add_argument("--device", default=None, help="torch device (default cuda if available, else cpu)")
    p.set_defaults(func=run)
