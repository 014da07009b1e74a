"""Graceful stop on SIGTERM / SIGINT: the first signal asks for a checkpoint at the end of the step."""

from __future__ import annotations

import logging
import signal
from collections.abc import Iterator
from contextlib import contextmanager

logger = logging.getLogger(__name__)

__all__ = ["StopFlag", "catch_stop_signals"]


class StopFlag:
    """The signal number received (None until one arrives)."""

    def __init__(self) -> None:
        self.signal: int | None = None


@contextmanager
def catch_stop_signals(flag: StopFlag) -> Iterator[StopFlag]:
    """Record SIGTERM/SIGINT in ``flag`` while inside; a second signal raises ``KeyboardInterrupt`` at once.

    Handlers are only installed on the main thread; the previous ones are restored on exit.
    """
    def handler(signum, _frame):
        if flag.signal is not None:  # second signal: stop now, without a checkpoint
            raise KeyboardInterrupt(f"signal {signum} received twice")
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
