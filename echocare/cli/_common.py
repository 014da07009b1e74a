"""Argument and config helpers shared by the training verbs (pretrain, finetune, protocol, quickstart).

Not a verb: :mod:`echocare.cli` only registers the modules named in its ``_VERBS``. Heavy imports stay
inside the functions so ``echocare --help`` stays fast.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

def add_config_arguments(p: argparse.ArgumentParser, config_example: str, set_example: str) -> None:
    """``--config``, repeated ``--set`` and ``--help-config``."""
    p.add_argument("--config", help=f"YAML recipe (e.g. {config_example})")
    add_set_argument(p, f"override a config key, repeatable (e.g. --set {set_example})")
    p.add_argument("--help-config", action="store_true", help="list every config key with type, default, help")


def add_set_argument(p: argparse.ArgumentParser, help_text: str) -> None:
    """Repeated ``--set KEY=VALUE`` config overrides (``args.set``: a list, or None)."""
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help=help_text)


def add_run_arguments(p: argparse.ArgumentParser, default_output_dir: str, auto_note: str = "") -> None:
    """``--output-dir`` (a run directory) and ``--resume auto|PATH``; ``auto_note`` adds to the 'auto' help."""
    p.add_argument("--output-dir", default=default_output_dir,
                   help=f"run directory (default {default_output_dir})")
    p.add_argument("--resume", default=None, metavar="auto|PATH",
                   help=f"'auto' = newest complete checkpoint in --output-dir{auto_note}; "
                        "or a checkpoint / run directory")


def error_exit(verb: str, err: BaseException) -> int:
    """Print ``echocare VERB: error: ERR`` (one line) to stderr; return the usage-error exit code 2."""
    text = " ".join(str(err).split()) or type(err).__name__
    if isinstance(err, OSError) and err.filename is not None and str(err.filename) not in text:
        text = f"{text}: {err.filename}"
    print(f"echocare {verb}: error: {text}", file=sys.stderr)
    return 2


def user_error_types() -> tuple[type[BaseException], ...]:
    """The exceptions the CLI reports as one line with exit code 2: :class:`echocare.errors.UserError` (config,
    schema, manifest, ontology, catalogue, weights file, checkpoint, data, resume-config and non-finite
    errors all derive from it) and missing or wrong user paths."""
    from echocare.errors import UserError

    return (UserError, FileNotFoundError, NotADirectoryError, IsADirectoryError)


def exit_code(signum: int) -> int:
    """Exit code of a run stopped by signal ``signum``: ``128 + signum`` (SIGTERM 143, SIGINT 130)."""
    return 128 + int(signum)


def load_config_or_report(config_cls: type, path: Any, overrides: Any, verb: str) -> Any:
    """The validated config (defaults <- YAML ``path`` <- ``overrides``), or None after printing the error."""
    from echocare.config import ConfigError, load_config

    try:
        return load_config(config_cls, path, overrides)
    except (ConfigError, FileNotFoundError) as err:
        error_exit(verb, err)
        return None
