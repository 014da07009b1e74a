"""Graceful stop on SIGTERM / SIGINT: the first signal asks for a checkpoint at the end of the step.

What a scheduler, ``docker stop`` or a terminal does is signal the whole process group
(``kill -TERM -- -PGID``, Ctrl-C). The data loader's worker processes ignore both signals
(:func:`echocare.data.workers.ignore_stop_signals`), so only the main process reacts: it finishes the
current optimizer step, writes a checkpoint and returns; the CLI then exits ``128 + signal``
(143 for SIGTERM, 130 for SIGINT). A second signal exits at once with the same code, without a
checkpoint and without a traceback.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager

logger = logging.getLogger(__name__)

__all__ = ["StopFlag", "catch_stop_signals", "exit_code"]


class StopFlag:
    """The signal number received (None until one arrives)."""

    def __init__(self) -> None:
        self.signal: int | None = None


def exit_code(signum: int) -> int:
    """The shell convention for a process stopped by ``signum``: ``128 + signum`` (SIGTERM 143, SIGINT 130)."""
    return 128 + int(signum)


def _exit_now(signum: int) -> None:
    """Second signal: flush what was logged and leave at once (no checkpoint, no traceback)."""
    logger.error("received signal %d again: exiting now without a checkpoint (exit code %d)", signum,
                 exit_code(signum))
    for handler in logging.getLogger().handlers:
        try:
            handler.flush()
        except (OSError, ValueError):
            pass
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(exit_code(signum))


@contextmanager
def catch_stop_signals(flag: StopFlag) -> Iterator[StopFlag]:
    """Record SIGTERM/SIGINT in ``flag`` while inside; a second signal exits the process at once.

    Handlers are only installed on the main thread; the previous ones are restored on exit.
    """
    main_pid = os.getpid()

    def handler(signum, _frame):
        if os.getpid() != main_pid:  # a forked child that kept this handler: not ours to stop
            return
        if flag.signal is not None:
            _exit_now(signum)
        logger.warning("received signal %d: checkpointing at the end of this step "
                       "(send it again to stop immediately)", signum)
        flag.signal = signum

    previous = {}
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            previous[sig] = signal.signal(sig, handler)
        except ValueError:  # not the main thread
            pass
    try:
        yield flag
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
