"""Helpers run inside DataLoader worker processes.

:func:`ignore_stop_signals` is the ``worker_init_fn`` of the pretraining loader and of the fine-tuning
:class:`~echocare.data.labeled.EpochLoader`. A scheduler, ``docker stop`` or a terminal sends SIGTERM /
SIGINT to the whole process group (``kill -TERM -- -PGID``, Ctrl-C): the workers are in that group too,
and if they died the main process would fail mid-step ("DataLoader worker ... killed by signal") instead of
checkpointing. Workers therefore ignore both signals and leave the stop to the trainer in the main process;
they still exit when the main process exits (torch's worker watchdog notices the parent is gone).
"""

from __future__ import annotations

import signal

__all__ = ["STOP_SIGNALS", "ignore_stop_signals"]

#: The signals a graceful stop reacts to (the main process checkpoints; workers ignore them).
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def ignore_stop_signals(worker_id: int = 0) -> None:
    """``worker_init_fn``: ignore SIGTERM and SIGINT in this DataLoader worker.

    Args:
        worker_id: The worker index DataLoader passes (unused).
    """
    del worker_id
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
