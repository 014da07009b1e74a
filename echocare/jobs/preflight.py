"""Checks a job runs before it writes anything: a user error must not leave a half-made run directory.

Creating the :class:`~echocare.engine.trainer.Trainer` creates the run directory, so every input that can be
wrong — the model name, the shard directory, the ``--resume`` target, a ``model.init`` weights file — is checked
first, each failing with a one-line user error (:class:`echocare.errors.UserError` or ``FileNotFoundError``;
the CLI prints it and exits 2).
"""

from __future__ import annotations

from pathlib import Path

from echocare.config import ConfigError
from echocare.engine.checkpoint import CheckpointManager
from echocare.models.registry import resolve_model_name

__all__ = ["check_model_name", "check_resume"]


def check_model_name(name: str) -> str:
    """The canonical registered name of ``model.name``.

    Raises:
        ConfigError: unknown name (the message lists the known names and close matches).
    """
    try:
        return resolve_model_name(name)
    except ValueError as err:
        raise ConfigError(f"model.name: {err}") from None


def check_resume(output_dir: str | Path, resume: str | Path | None) -> None:
    """Resolve ``--resume`` the way the trainer will (``auto`` with no checkpoint is a fresh start).

    Raises:
        FileNotFoundError: an explicit ``--resume`` path is not a complete checkpoint or run directory.
    """
    if resume is not None and str(resume) not in ("", "auto"):
        CheckpointManager(Path(output_dir) / "checkpoints").resolve(resume)
