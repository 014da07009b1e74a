"""Training engine: the only package that imports accelerate / DeepSpeed.

``Trainer`` (see :mod:`echocare.engine.trainer` for how tasks and data plug in),
checkpoint/resume, optimizer groups, lr schedules, logging and run figures.
"""

from echocare.engine.checkpoint import CheckpointManager
from echocare.engine.optim import build_optimizer, build_param_groups
from echocare.engine.schedule import build_scheduler, lr_factor
from echocare.engine.trainer import FitResult, NonFiniteLossError, Trainer

__all__ = [
    "CheckpointManager",
    "FitResult",
    "NonFiniteLossError",
    "Trainer",
    "build_optimizer",
    "build_param_groups",
    "build_scheduler",
    "lr_factor",
]
