"""``echocare export RUN_DIR_OR_CHECKPOINT --out FILE.safetensors [--full]``."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``export`` verb."""
    parser = subparsers.add_parser(
        "export",
        help="export the encoder of a run to safetensors (loadable by stock timm)",
        description=(
            "Write the encoder of a run (newest complete checkpoint), a checkpoint folder or a weights file "
            "to one .safetensors file whose metadata lets timm.create_model(architecture, **model_args) "
            "load it strictly without echocare. --full exports the whole pretraining model instead."
        ),
    )
    parser.add_argument("src", help="run directory, checkpoints/step-N folder, or model.safetensors/.bin file")
    parser.add_argument("--out", required=True, help="output path, must end in .safetensors")
    parser.add_argument("--full", action="store_true", help="also export decoder and classifier (+ mask token)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the export; print the written path, or the error, and return an exit code."""
    from echocare.jobs.export import export_encoder

    out = export_encoder(args.src, args.out, full=args.full)  # user errors: one line, exit 2 (echocare.cli)
    print(out)
    return 0
