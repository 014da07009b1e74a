"""What ``Trainer.fit`` does between optimizer steps besides training: periodic validation with best-weight
selection, and the reconstruction-panel PNGs.

Both run on the main process, in eval mode, with the RNG state forked (a run with validation draws the same
random numbers as one without), and give the task back in train mode.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import nn

from echocare.engine.state import FitSession, check_finite_weights
from echocare.engine.viz import plot_loss_curve, save_panel_grid

logger = logging.getLogger(__name__)

__all__ = ["run_validation", "save_best_weights", "write_panels"]


def run_validation(s: FitSession, step: int, best_path: Path, is_main: bool, world_size: int) -> None:
    """Run the evaluation callback (main process), log ``val/*`` and keep the best weights at ``best_path``;
    every rank ends up with the main process's best value and step."""
    ev = s.evaluation
    if is_main:
        task = s.task
        was_training = task.training
        task.eval()
        try:
            with torch.random.fork_rng(devices=[]):
                values = {k: float(v) for k, v in ev.fn(task).items()}
        finally:
            task.train(was_training)
        s.metrics.log(step, {f"val/{k}": v for k, v in values.items()})
        logger.info("step %d validation %s", step, json.dumps(values))
        if ev.metric is not None:
            if ev.metric not in values:
                raise KeyError(f"selection metric {ev.metric!r} is not among the evaluation results "
                               f"{sorted(values)}")
            if ev.better(values[ev.metric], s.state.best_value):
                s.state.best_value, s.state.best_step = values[ev.metric], step
                s.result.best_weights = save_best_weights(s.task, step, best_path)
                s.result.best_value, s.result.best_step = s.state.best_value, step
                logger.info("new best %s=%.6g at step %d", ev.metric, s.state.best_value, step)
    if world_size > 1:  # the best value/step are checkpointed from rank 0 only
        from accelerate.utils import broadcast_object_list

        box = [(s.state.best_value, s.state.best_step)]
        broadcast_object_list(box, from_process=0)
        s.state.best_value, s.state.best_step = box[0]


def save_best_weights(task: nn.Module, step: int, path: Path) -> Path:
    """Write the task's weights (finite, on CPU) atomically to ``path`` as safetensors."""
    tmp = path.with_name(path.name + ".tmp")
    state = {k: v.detach().to("cpu").clone().contiguous() for k, v in task.state_dict().items()}
    check_finite_weights(state.items(), str(path))
    save_file(state, str(tmp), {"format": "pt", "step": str(step)})
    tmp.replace(path)
    return path


def write_panels(s: FitSession, step: int, run_dir: Path, autocast: Any) -> None:
    """``task.visualize(last batch)`` as ``RUN/images/recon_step-N.png`` and ``recon_latest.png``, and the loss
    curve (tasks without ``visualize`` are skipped)."""
    task = s.task  # not accelerator.unwrap_model: that imports deepspeed (slow) when installed
    fn = getattr(task, "visualize", None)
    if s.last_batch is None or not callable(fn):
        return
    was_training = task.training
    task.eval()
    try:
        with torch.random.fork_rng(devices=[]), torch.no_grad(), autocast(), s.forward_ctx():
            panels = fn(s.last_batch)
        if panels:
            path = save_panel_grid(panels, run_dir / "images" / f"recon_step-{step:08d}.png", title=f"step {step}")
            save_panel_grid(panels, run_dir / "recon_latest.png", title=f"step {step}")
            logger.debug("wrote %s", path)
        plot_loss_curve(run_dir / "metrics.jsonl", run_dir / "loss_curve.png")
    finally:
        task.train(was_training)
