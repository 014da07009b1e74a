"""The ``echocare`` console script.

Each verb lives in its own module under :mod:`echocare.cli` and exposes
``register(subparsers)``; the module adds its parser and sets ``func`` to a
callable taking the parsed namespace and returning an exit code. Verb modules
import heavy dependencies inside ``func`` so ``echocare --help`` stays fast.

User errors are reported here, once for every verb: an exception of a type in
:func:`echocare.cli._common.user_error_types` (:class:`echocare.errors.UserError` and its subclasses,
missing user paths) is printed as ``echocare VERB: error: MESSAGE`` and exits 2; Ctrl-C before training
starts exits 130 with one line. ``echocare --debug VERB ...`` shows the traceback instead. Every other
exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import signal
import sys

from echocare.cli._common import error_exit, exit_code, user_error_types

# Verb modules, in the order they appear in ``--help``.
_VERBS = ("shards", "pretrain", "export", "finetune", "evaluate", "protocol", "quickstart", "catalog")


def build_parser() -> argparse.ArgumentParser:
    """Build the top-level parser with one subparser per verb module."""
    parser = argparse.ArgumentParser(
        prog="echocare",
        description="Pretrain and adapt ultrasound foundation models (EchoCare).",
    )
    parser.add_argument("--log-level", default="INFO", help="Python logging level (default INFO).")
    parser.add_argument("--debug", action="store_true",
                        help="show the full traceback of user errors (otherwise one line, exit code 2)")
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
    try:
        code = args.func(args)
    except user_error_types() as err:  # evaluated only when an exception arrives: no import cost
        if args.debug:
            raise
        return error_exit(args.verb, err)
    except KeyboardInterrupt:
        if args.debug:
            raise
        print(f"echocare {args.verb}: interrupted", file=sys.stderr)
        return exit_code(signal.SIGINT)
    return int(code or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
