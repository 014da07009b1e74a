"""State of a training run: counters (checkpointed), the outcome of ``fit``, periodic validation, the objects
of one ``fit`` call, and the resolved-config check on resume.

Periodic validation: ``Trainer.fit(..., evaluate=fn, eval_every=N, select_metric=name, lower_is_better=...)``
calls ``fn(task) -> {name: float}`` on the main process every N optimizer steps (and at the last step), logs
the values to ``metrics.jsonl`` as ``val/<name>`` and keeps the weights of the best ``select_metric`` value
(strict improvements only) in ``RUN/best.safetensors``; the best value and step are part of
:class:`TrainState`, so a resumed run keeps comparing against them.

The checkpoint's ``trainer_state.json`` holds :class:`TrainState` plus the flattened resolved config and
its hash. Keys in :data:`RESUME_SAFE_KEYS` may change between a run and its resume (they do not change
what is computed: logging and checkpoint cadence, progress bars, evaluation batching, worker counts of
the fine-tuning loader), and so may settings that echocare added after the checkpoint was written, at their
defaults (logged: a newer echocare resumes an older run); any other change — including ``train.max_steps``,
which reshapes the lr schedule — fails with :class:`ConfigChangedError` unless ``train.allow_config_change``
is true.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from echocare.config import config_to_dict
from echocare.engine.logging_utils import MetricsLogger
from echocare.errors import UserError

logger = logging.getLogger(__name__)

__all__ = ["BEST_FILE", "RESUME_SAFE_KEYS", "ConfigChangedError", "Evaluation", "FitResult", "FitSession",
           "NonFiniteLossError", "NonFiniteWeightsError", "StepWindow", "TrainState", "changed_keys",
           "check_finite_weights", "check_resume_config", "config_hash", "default_config_flat", "flatten_config"]

class NonFiniteLossError(UserError, RuntimeError):
    """Too many consecutive optimizer steps had a non-finite loss or gradient norm."""


class NonFiniteWeightsError(UserError, RuntimeError):
    """Weights to be checkpointed or exported hold NaN or infinite values."""


class ConfigChangedError(UserError, ValueError):
    """Resuming a run whose resolved config differs from the checkpoint's."""


#: Config keys that may change between a run and its resume (logging / checkpoint cadence, the escape
#: hatch itself, and evaluation batching); every other resolved key must match the checkpoint's.
RESUME_SAFE_KEYS = frozenset({
    "train.ckpt_every", "train.keep_last", "train.log_every", "train.image_every", "train.progress",
    "train.tensorboard", "train.max_nonfinite", "train.allow_config_change", "data.num_workers", "eval.batch_size",
    "train.compile",
})
BEST_FILE = "best.safetensors"


def check_finite_weights(tensors: Iterable[tuple[str, Any]], what: str) -> None:
    """Refuse weights that hold NaN or +-inf (an overflowed run must not be checkpointed or exported).

    Args:
        tensors: ``(name, tensor)`` pairs, e.g. ``model.named_parameters()`` or a state dict's ``items()``.
        what: What was about to be written (named in the error).

    Raises:
        NonFiniteWeightsError: naming up to three offending tensors and how many there are.
    """
    import torch

    bad = [name for name, t in tensors
           if isinstance(t, torch.Tensor) and t.is_floating_point() and not bool(torch.isfinite(t).all())]
    if bad:
        more = f" (+{len(bad) - 3} more)" if len(bad) > 3 else ""
        raise NonFiniteWeightsError(
            f"refusing to write {what}: {len(bad)} tensor(s) hold NaN or infinite values ({', '.join(bad[:3])}"
            f"{more}); the run diverged: resume from an earlier checkpoint with a lower optim.lr or optim.clip_grad")


def flatten_config(config: Any) -> dict[str, Any]:
    """``{"section.key": value}`` of a config dataclass (or nested dict), minus :data:`RESUME_SAFE_KEYS`."""
    tree = config if isinstance(config, dict) else config_to_dict(config)
    flat: dict[str, Any] = {}
    for section, sub in tree.items():  # sections are one level deep; dict-valued keys stay values
        items = sub.items() if isinstance(sub, dict) else [(None, sub)]
        for k, v in items:
            key = section if k is None else f"{section}.{k}"
            if key not in RESUME_SAFE_KEYS:
                flat[key] = v
    return flat


def default_config_flat(config: Any) -> dict[str, Any] | None:
    """:func:`flatten_config` of ``type(config)()`` (the defaults), or None for a config without defaults."""
    if config is None or isinstance(config, dict):
        return None
    try:
        return flatten_config(type(config)())
    except TypeError:  # a dataclass with required fields
        return None


def config_hash(flat: dict[str, Any]) -> str:
    """sha256 of a flattened config (sorted JSON)."""
    return hashlib.sha256(json.dumps(flat, sort_keys=True, default=str).encode()).hexdigest()


@dataclass
class FitResult:
    """Outcome of :meth:`Trainer.fit`.

    Attributes:
        step: Optimizer steps taken in total (including before a resume).
        interrupted: Stopped early by SIGTERM/SIGINT (a checkpoint was written).
        stop_signal: The signal that stopped the run (``signal.SIGTERM`` / ``signal.SIGINT``), or None.
        nonfinite_skipped: Optimizer steps skipped because a loss was non-finite.
        last_checkpoint: Newest checkpoint directory, if any.
        last_metrics: The last metrics.jsonl record written.
        best_value: Best value of the selection metric (periodic validation), or None.
        best_step: Step of ``best_value``, or None.
        best_weights: ``RUN/best.safetensors`` (the task's state dict at ``best_step``), or None.
    """

    step: int
    interrupted: bool = False
    stop_signal: int | None = None
    nonfinite_skipped: int = 0
    last_checkpoint: Path | None = None
    last_metrics: dict = field(default_factory=dict)
    best_value: float | None = None
    best_step: int | None = None
    best_weights: Path | None = None


@dataclass
class TrainState:
    """Counters of a run; all of it is saved in ``trainer_state.json`` and restored on resume."""

    step: int = 0
    nonfinite_skipped: int = 0
    epoch: int = 0
    samples: int = 0
    best_value: float | None = None
    best_step: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-able fields."""
        return asdict(self)

    def restore(self, saved: dict[str, Any]) -> None:
        """Take the fields present in a saved ``trainer_state.json``."""
        for k in asdict(self):
            if k in saved:
                setattr(self, k, saved[k])


@dataclass
class Evaluation:
    """Periodic validation of one :meth:`Trainer.fit` call (see the module docstring)."""

    fn: Callable[[nn.Module], dict[str, float]] | None = None
    every: int = 0
    metric: str | None = None
    lower_is_better: bool = False

    def due(self, step: int, max_steps: int) -> bool:
        """Whether to evaluate after optimizer step ``step``."""
        return self.fn is not None and self.every > 0 and (step % self.every == 0 or step == max_steps)

    def better(self, value: float, best: float | None) -> bool:
        """Whether ``value`` improves on ``best``."""
        return best is None or (value < best if self.lower_is_better else value > best)


def changed_keys(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Flattened keys whose values differ (ignoring :data:`RESUME_SAFE_KEYS`)."""
    return sorted(k for k in set(old) | set(new) if k not in RESUME_SAFE_KEYS and old.get(k) != new.get(k))


def check_resume_config(saved: dict[str, Any], current: dict[str, Any] | None, allow: bool, path: Path,
                        defaults: dict[str, Any] | None = None) -> None:
    """Compare the flattened resolved config with the one a checkpoint's state was written under.

    Args:
        saved: The checkpoint's trainer state (``config``, ``config_hash``).
        current: This run's flattened config.
        allow: ``train.allow_config_change``.
        path: The checkpoint (for messages).
        defaults: The flattened default config. A key the checkpoint's config lacks (a setting added to echocare
            after the checkpoint was written) whose value here is its default is not a change: an upgrade between
            a crash and its resume keeps the run resumable (logged). Set to anything else, it is a change.

    Raises:
        ConfigChangedError: keys differ and ``allow`` is false (with ``allow`` the change is logged).
    """
    old = saved.get("config")
    if current is None or old is None:
        return
    if config_hash(current) == saved.get("config_hash", config_hash(old)):
        return
    changed = changed_keys(old, current)
    added = [k for k in changed if k not in old and defaults is not None and k in defaults
             and current.get(k) == defaults[k]]
    if added:
        logger.warning("resuming %s: the checkpoint predates setting(s) %s; they take their defaults (%s)", path,
                       ", ".join(added), ", ".join(f"{k}={current[k]!r}" for k in added))
        changed = [k for k in changed if k not in added]
    if not changed:
        return
    detail = ", ".join(f"{k}: {old.get(k)!r} -> {current.get(k)!r}" for k in changed[:8])
    more = f" (+{len(changed) - 8} more)" if len(changed) > 8 else ""
    if allow:
        logger.warning("resuming %s with a changed config (train.allow_config_change=true): %s%s", path, detail, more)
        return
    raise ConfigChangedError(f"resume {path}: the config differs from the checkpoint's in {detail}{more}; "
                             "restore it or set train.allow_config_change=true")


@dataclass
class StepWindow:
    """Sums between two metrics.jsonl lines."""

    sums: dict[str, Any] = field(default_factory=dict)
    n: int = 0
    images: int = 0
    t0: float = field(default_factory=time.perf_counter)

    def add(self, loss: torch.Tensor, logs: dict[str, Any]) -> None:
        """Add one micro-batch's loss and task logs (tensors stay on device: no sync per step)."""
        self.sums["loss"] = self.sums.get("loss", 0.0) + loss.detach().float()
        for name, value in logs.items():
            value = value.detach().float() if isinstance(value, torch.Tensor) else float(value)
            self.sums[name] = self.sums.get(name, 0.0) + value
        self.n += 1

    def means(self, device: torch.device,
              reduce_sum: Callable[[torch.Tensor], torch.Tensor] | None) -> dict[str, float]:
        """Mean of every logged value over the window's micro-batches of all ranks (``loss`` is NaN if none).

        Args:
            device: Device of the reduction tensors.
            reduce_sum: Sum over ranks (None: one process).
        """
        names = sorted(self.sums)
        vec = (torch.stack([torch.as_tensor(self.sums[k], dtype=torch.float32, device=device) for k in names])
               if names else torch.zeros(0, device=device))
        count = torch.tensor([float(self.n)], device=device)
        if reduce_sum is not None:
            vec, count = reduce_sum(vec), reduce_sum(count)
        n = max(1.0, float(count.item()))
        values = {k: float(v) / n for k, v in zip(names, vec.tolist())}
        values.setdefault("loss", float("nan"))
        return values


@dataclass
class FitSession:
    """Everything one :meth:`Trainer.fit` call works with (created by ``Trainer._start``, dropped at the end)."""

    task: nn.Module  # unwrapped (prepare wraps it for DDP / DeepSpeed)
    model: nn.Module  # prepared
    optimizer: Any
    scheduler: Any
    data: Iterable[dict]
    metrics: MetricsLogger
    forward_ctx: Callable
    evaluation: Evaluation
    state: TrainState
    result: FitResult
    progress: Any = None
    iterator: Iterator[dict] | None = None
    window: StepWindow = field(default_factory=StepWindow)
    consecutive_bad: int = 0
    grad_norm: Any = None
    lr: float = 0.0
    last_batch: dict | None = None
