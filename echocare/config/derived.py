"""Values derived once from a config and the launch (world size): batch, lr, schedule length."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from echocare.config.schema import OptimConfig, TrainConfig


@dataclass(frozen=True)
class DerivedSchedule:
    """Effective batch and schedule of a run.

    Attributes:
        world_size: Number of training processes.
        effective_batch: ``train.batch_size * world_size * train.grad_accum`` images per step.
        peak_lr: ``optim.lr * effective_batch / optim.lr_ref_batch`` (or ``optim.lr`` unscaled).
        total_steps: Optimizer steps (``train.max_steps``).
        warmup_steps: Linear warmup steps, at most ``total_steps``.
        min_lr: Final learning rate (``peak_lr * optim.min_lr_ratio``).
    """

    world_size: int
    effective_batch: int
    peak_lr: float
    total_steps: int
    warmup_steps: int
    min_lr: float

    def to_dict(self) -> dict:
        """Plain dict (for logs and config.yaml comments)."""
        return asdict(self)


def derive_schedule(train: TrainConfig, optim: OptimConfig, world_size: int) -> DerivedSchedule:
    """Compute the effective batch, scaled peak lr and warmup for ``world_size`` processes.

    Args:
        train: Training-loop section.
        optim: Optimizer section.
        world_size: Number of processes (GPUs or CPU ranks).

    Returns:
        The derived schedule.
    """
    if world_size <= 0:
        raise ValueError(f"world_size must be > 0, got {world_size}")
    eff = train.batch_size * world_size * train.grad_accum
    peak = optim.lr * eff / optim.lr_ref_batch if optim.scale_lr else optim.lr
    if optim.warmup_fraction is not None:
        warmup = int(round(optim.warmup_fraction * train.max_steps))
    else:
        warmup = optim.warmup_steps
    warmup = min(warmup, train.max_steps)
    return DerivedSchedule(
        world_size=world_size,
        effective_batch=eff,
        peak_lr=peak,
        total_steps=train.max_steps,
        warmup_steps=warmup,
        min_lr=peak * optim.min_lr_ratio,
    )
