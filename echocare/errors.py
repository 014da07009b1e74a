"""The user-error base class: an input the user gave (config, path, file, data) is wrong.

Every error echocare raises for a bad input derives from :class:`UserError` (``ConfigError``,
``SchemaError``, ``WeightsFileError``, ``ManifestError``, ``OntologyError``, ``DataError``,
``CheckpointError``, ``ConfigChangedError``, the non-finite aborts, ...). The ``echocare`` CLI prints
such an error as one line and exits 2 (the full traceback only with ``echocare --debug``); anything else
is a bug and keeps its traceback. This module imports nothing, so every package can use it.
"""

from __future__ import annotations

__all__ = ["DataError", "UserError"]


class UserError(Exception):
    """Base of the errors caused by a user's input; the CLI reports them in one line with exit code 2."""


class DataError(UserError, ValueError):
    """Data on disk cannot be used as given (missing or empty shard directory, no usable items, ...)."""
