"""Training engine: the only package that imports accelerate / DeepSpeed.

``Trainer`` (see :mod:`echocare.engine.trainer` for how tasks and data plug in),
checkpoint/resume (with the resolved-config check), periodic validation with best-weights
selection, optimizer groups, lr schedules, logging and run figures. Generic: it imports nothing from
``echocare.tasks``, ``echocare.data`` or ``echocare.models`` (jobs in :mod:`echocare.jobs` assemble those).
"""

from echocare.engine.checkpoint import CheckpointManager
from echocare.engine.optim import build_optimizer, build_param_groups
from echocare.engine.schedule import build_scheduler, lr_factor
from echocare.engine.state import (
    ConfigChangedError,
    FitResult,
    NonFiniteLossError,
    NonFiniteWeightsError,
    TrainState,
    check_finite_weights,
)
from echocare.engine.trainer import Trainer

__all__ = [
    "CheckpointManager",
    "ConfigChangedError",
    "FitResult",
    "NonFiniteLossError",
    "NonFiniteWeightsError",
    "TrainState",
    "Trainer",
    "build_optimizer",
    "build_param_groups",
    "build_scheduler",
    "check_finite_weights",
    "lr_factor",
]
