"""The ``echocare`` console script.

Each verb lives in its own module under :mod:`echocare.cli` and exposes
``register(subparsers)``; the module adds its parser and sets ``func`` to a
callable taking the parsed namespace and returning an exit code. Verb modules
import heavy dependencies inside ``func`` so ``echocare --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

# Verb modules, in the order they appear in ``--help``.
_VERBS = ("shards", "pretrain", "export", "finetune", "evaluate", "protocol", "quickstart", "catalog")


def build_parser() -> argparse.ArgumentParser:
    """Build the top-level parser with one subparser per verb module."""
    parser = argparse.ArgumentParser(
        prog="echocare",
        description="Pretrain and adapt ultrasound foundation models (EchoCare).",
    )
    parser.add_argument("--log-level", default="INFO", help="Python logging level (default INFO).")
    sub = parser.add_subparsers(dest="verb", metavar="VERB")
    sub.required = True
    for verb in _VERBS:
        try:
            module = importlib.import_module(f"echocare.cli.{verb}")
        except ModuleNotFoundError as err:  # a verb whose module is not part of this build
            if err.name != f"echocare.cli.{verb}":
                raise
            continue
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``echocare`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, str(args.log_level).upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    code = args.func(args)
    return int(code or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
