"""Run logging: ``metrics.jsonl``, TensorBoard scalars, and a tqdm bar (main process only)."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


def _plain(value: Any) -> Any:
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


class MetricsLogger:
    """Append one JSON line per logging step; mirror scalars to TensorBoard.

    Args:
        run_dir: Run directory (``metrics.jsonl`` and ``tensorboard/`` live there).
        enabled: False on non-main processes (then every call is a no-op).
        tensorboard: Also write TensorBoard event files.
    """

    def __init__(self, run_dir: str | Path, enabled: bool = True, tensorboard: bool = True) -> None:
        self.path = Path(run_dir) / "metrics.jsonl"
        self.enabled = enabled
        self._tb = None
        if enabled and tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(log_dir=str(Path(run_dir) / "tensorboard"))
            except ImportError as err:  # tensorboard missing: keep going with metrics.jsonl
                logger.warning("TensorBoard disabled: %s", err)

    def truncate_after(self, step: int) -> int:
        """Drop lines with ``step > step`` (written after the checkpoint a resume starts from).

        Returns:
            Number of dropped lines.
        """
        if not self.enabled or not self.path.is_file():
            return 0
        kept, dropped = [], 0
        for line in self.path.read_text().splitlines():
            try:
                if json.loads(line).get("step", 0) > step:
                    dropped += 1
                    continue
            except json.JSONDecodeError:  # a torn last line from a killed process
                dropped += 1
                continue
            kept.append(line)
        self.path.write_text("".join(f"{line}\n" for line in kept))
        if dropped:
            logger.info("metrics.jsonl: dropped %d line(s) after resumed step %d", dropped, step)
        return dropped

    def set_aside(self) -> Path | None:
        """A fresh start (no checkpoint to resume): move an old ``metrics.jsonl`` out of the way.

        Lines of an earlier attempt that died before its first checkpoint would otherwise stay in front
        of the new run's lines, so every step would appear twice. The old file is renamed (never deleted)
        to ``metrics.jsonl.N``, N = 1, 2, ... the first free number (so higher numbers are newer attempts).

        Returns:
            The new name of the old file, or None when there was none (or this is not the main process).
        """
        if not self.enabled or not self.path.is_file() or self.path.stat().st_size == 0:
            return None
        n = 1
        while self.path.with_name(f"{self.path.name}.{n}").exists():
            n += 1
        target = self.path.with_name(f"{self.path.name}.{n}")
        self.path.replace(target)
        logger.warning("fresh start in a run directory with an old metrics.jsonl (an earlier attempt without a "
                       "checkpoint): moved it to %s", target)
        return target

    def log(self, step: int, values: dict[str, Any]) -> None:
        """Write ``{"step": step, **values}``."""
        if not self.enabled:
            return
        record = {"step": int(step), **{k: _plain(v) for k, v in values.items()}}
        with self.path.open("a") as fh:
            fh.write(json.dumps(record) + "\n")
        if self._tb is not None:
            for key, value in record.items():
                if key != "step" and isinstance(value, (int, float)) and not isinstance(value, bool):
                    self._tb.add_scalar(key if "/" in key else f"train/{key}", value, step)

    def close(self) -> None:
        """Flush and close TensorBoard."""
        if self._tb is not None:
            self._tb.flush()
            self._tb.close()
            self._tb = None


def read_metrics(path: str | Path) -> list[dict]:
    """Parse ``metrics.jsonl`` (skipping a torn last line)."""
    records = []
    path = Path(path)
    if not path.is_file():
        return records
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def make_progress(total: int, initial: int, enabled: bool):
    """A tqdm bar over optimizer steps (ETA from tqdm), or None when disabled."""
    if not enabled:
        return None
    import sys

    from tqdm.auto import tqdm

    interactive = sys.stderr.isatty()
    return tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True, smoothing=0.1,
                mininterval=0.5 if interactive else 30.0)
