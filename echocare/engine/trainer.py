"""The training loop shared by pretraining and fine-tuning.

How a task and data plug in
---------------------------
A **task** is an ``nn.Module`` whose ``forward(batch: dict)`` returns::

    {"loss": scalar tensor, "logs": {name: float or scalar tensor, ...}}

Tasks never call ``backward``; the engine does. Optional task methods:

* ``lr_groups() -> list[dict]``: lr groups (``params``, ``names``, ``lr_scale``),
  e.g. layer-wise lr decay; without it all parameters share one lr. Weight
  decay is always decided by the engine's one rule
  (:func:`echocare.engine.optim.is_no_weight_decay`: no decay for norms,
  biases, tokens, position tables, ``no_weight_decay()`` names).
* ``set_grad_checkpointing(enable: bool)``: called when
  ``train.grad_checkpointing`` is true.
* ``visualize(batch) -> dict[str, Tensor (K, C, H, W)]``: panels in [0, 1]
  written as a PNG grid every ``train.image_every`` steps (main process,
  eval mode, no grad, RNG untouched).

**Data** is any iterable of dict batches (tensors are moved to the device;
other values are passed through). Each process must yield its own part of the
data (webdataset node splitting). When the iterable is exhausted it is
iterated again (next epoch). If it has ``state_dict()`` / ``load_state_dict()``,
the position is checkpointed per process and restored on resume, which makes
a resumed run bit-identical to an uninterrupted one (given the same seed).
The batch size used for img/s is ``len(batch[batch_size_key])``.

Usage::

    trainer = Trainer(cfg.train, cfg.optim, run_dir, config=config_to_dict(cfg))
    loader = build_loader(...)            # after the Trainer: the process group exists now
    result = trainer.fit(task, loader, resume="auto")

``Trainer`` owns accelerate (single process, DDP, DeepSpeed ZeRO-1/2), the
optimizer and per-step warmup+cosine schedule, gradient accumulation and
clipping, bf16 autocast, the non-finite loss guard, checkpoint/resume (see
:mod:`echocare.engine.checkpoint`), ``metrics.jsonl`` + TensorBoard + tqdm,
and the loss-curve / panel PNGs in the run directory.
"""

from __future__ import annotations

import json
import logging
import signal
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import torch
from torch import nn

from echocare.config import OptimConfig, TrainConfig, derive_schedule, save_config
from echocare.engine.checkpoint import CheckpointManager
from echocare.engine.distributed import (
    configure_deepspeed,
    deepspeed_autocast,
    deepspeed_fp32_state,
    make_accelerator,
    zero_stage,
)
from echocare.engine.logging_utils import MetricsLogger, make_progress
from echocare.engine.optim import build_optimizer, build_param_groups
from echocare.engine.schedule import build_scheduler
from echocare.engine.viz import plot_loss_curve, save_panel_grid

logger = logging.getLogger(__name__)


class NonFiniteLossError(RuntimeError):
    """Too many consecutive optimizer steps had a non-finite loss."""


@dataclass
class FitResult:
    """Outcome of :meth:`Trainer.fit`.

    Attributes:
        step: Optimizer steps taken in total (including before a resume).
        interrupted: Stopped early by SIGTERM/SIGINT (a checkpoint was written).
        nonfinite_skipped: Optimizer steps skipped because a loss was non-finite.
        last_checkpoint: Newest checkpoint directory, if any.
        last_metrics: The last metrics.jsonl record written.
    """

    step: int
    interrupted: bool = False
    nonfinite_skipped: int = 0
    last_checkpoint: Path | None = None
    last_metrics: dict = field(default_factory=dict)


def _to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: _to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)) and batch and isinstance(batch[0], torch.Tensor):
        return type(batch)(_to_device(v, device) for v in batch)
    return batch


class Trainer:
    """Run a task over a data stream with accelerate.

    Creating the Trainer creates the Accelerator (and the process group), seeds
    every RNG with ``train.seed`` (identical model init on all ranks), creates
    the run directory and writes the resolved ``config.yaml``.

    Args:
        train: Training-loop section.
        optim: Optimizer section.
        run_dir: Output directory of the run.
        config: The full config dataclass (written to ``config.yaml``) or None.
        batch_size_key: Batch entry whose length is the micro-batch size.
    """

    def __init__(self, train: TrainConfig, optim: OptimConfig, run_dir: str | Path, config: Any = None,
                 batch_size_key: str = "image") -> None:
        from accelerate.utils import set_seed

        self.train_cfg = train
        self.optim_cfg = optim
        self.run_dir = Path(run_dir)
        self.batch_size_key = batch_size_key
        self.accelerator = make_accelerator(train.precision, train.grad_accum, project_dir=str(self.run_dir))
        self.derived = derive_schedule(train, optim, self.accelerator.num_processes)
        self.ckpt = CheckpointManager(self.run_dir / "checkpoints", keep_last=train.keep_last)
        set_seed(train.seed)
        if self.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self.ckpt.clean_stale()
            derived = dict(self.derived.to_dict(), mixed_precision=str(self.accelerator.mixed_precision))
            if config is not None:
                save_config(config, self.run_dir / "config.yaml", extra=derived)
            logger.info("derived: %s", json.dumps(derived))
        self.accelerator.wait_for_everyone()
        self._stop_signal: int | None = None

    @property
    def is_main(self) -> bool:
        """Whether this is the main process (rank 0)."""
        return self.accelerator.is_main_process

    @property
    def rank(self) -> int:
        """Global process index."""
        return self.accelerator.process_index

    @property
    def world_size(self) -> int:
        """Number of processes."""
        return self.accelerator.num_processes

    @property
    def device(self) -> torch.device:
        """Device of this process."""
        return self.accelerator.device

    # ------------------------------------------------------------------ signals
    @contextmanager
    def _signals(self):
        def handler(signum, _frame):
            if self._stop_signal is not None:  # second signal: stop now, without a checkpoint
                raise KeyboardInterrupt(f"signal {signum} received twice")
            logger.warning("received signal %d: checkpointing at the end of this step "
                           "(send it again to stop immediately)", signum)
            self._stop_signal = signum

        previous = {}
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                previous[sig] = signal.signal(sig, handler)
            except ValueError:  # not the main thread
                pass
        try:
            yield
        finally:
            for sig, old in previous.items():
                signal.signal(sig, old)

    def _any(self, flag: bool) -> bool:
        """True on every rank when ``flag`` is true on any rank."""
        if self.world_size == 1:
            return flag
        t = torch.tensor([1.0 if flag else 0.0], device=self.device)
        return bool(self.accelerator.reduce(t, reduction="sum").item() > 0)

    # ------------------------------------------------------------------ fit
    def fit(self, task: nn.Module, data: Iterable[dict], resume: str | Path | None = None) -> FitResult:
        """Train ``task`` on ``data`` until ``train.max_steps`` optimizer steps.

        Args:
            task: The task module (see module docstring).
            data: Iterable of dict batches for this process.
            resume: None, "auto" or a checkpoint / run directory.

        Returns:
            A :class:`FitResult`.

        Raises:
            NonFiniteLossError: ``train.max_nonfinite`` consecutive steps had a non-finite loss.
        """
        from accelerate.utils import set_seed

        tc, oc, acc = self.train_cfg, self.optim_cfg, self.accelerator
        if tc.grad_checkpointing:
            fn = getattr(task, "set_grad_checkpointing", None)
            if not callable(fn):
                raise ValueError(f"train.grad_checkpointing=true but {type(task).__name__} has no "
                                 "set_grad_checkpointing(enable)")
            fn(True)
        lr_groups = getattr(task, "lr_groups", None)
        groups = build_param_groups(task, oc.weight_decay, lr_groups=lr_groups() if callable(lr_groups) else None)
        optimizer = build_optimizer(groups, self.derived.peak_lr, oc.betas, oc.eps)
        scheduler = build_scheduler(optimizer, self.derived.warmup_steps, self.derived.total_steps,
                                    oc.schedule, oc.min_lr_ratio)
        configure_deepspeed(acc, tc.batch_size, oc.clip_grad)
        set_seed(tc.seed + self.rank)  # per-rank stochasticity (drop path) from here on
        self._forward_ctx = deepspeed_autocast(acc)
        self._task = task  # the unwrapped module (prepare wraps it for DDP / DeepSpeed)
        model, optimizer = acc.prepare(task, optimizer)
        self._prepared = model
        acc.register_for_checkpointing(scheduler)

        state = {"step": 0, "nonfinite_skipped": 0, "epoch": 0, "samples": 0}
        ckpt_path = self.ckpt.resolve(resume)
        if ckpt_path is not None:
            saved, loader_state = self.ckpt.load(acc, ckpt_path)
            state.update({k: saved[k] for k in state if k in saved})
            if loader_state is not None and hasattr(data, "load_state_dict"):
                data.load_state_dict(loader_state)
            elif loader_state is None and hasattr(data, "load_state_dict"):
                logger.warning("no data position in %s; the stream restarts from its seed", ckpt_path)
        metrics = MetricsLogger(self.run_dir, enabled=self.is_main, tensorboard=tc.tensorboard)
        if ckpt_path is not None:
            metrics.truncate_after(state["step"])
        result = FitResult(step=state["step"], nonfinite_skipped=state["nonfinite_skipped"])
        try:
            with self._signals():
                self._loop(model, optimizer, scheduler, data, state, metrics, result)
        finally:
            metrics.close()
        if self.is_main:
            plot_loss_curve(metrics.path, self.run_dir / "loss_curve.png")
        return result

    def _next_batch(self, data: Iterable[dict], state: dict) -> dict:
        for attempt in range(2):
            if self._iter is None:
                self._iter = iter(data)
            try:
                return next(self._iter)
            except StopIteration:
                self._iter = None
                state["epoch"] += 1
                if attempt == 1:
                    break
        raise RuntimeError("the data stream yielded no batch in a whole pass; check data.shards and the "
                           "number of samples per process (batch_size x processes)")

    def _loop(self, model, optimizer, scheduler, data, state: dict, metrics: MetricsLogger,
              result: FitResult) -> None:
        tc, oc, acc = self.train_cfg, self.optim_cfg, self.accelerator
        self._iter = None
        progress = make_progress(tc.max_steps, state["step"], tc.progress and self.is_main)
        window: dict[str, torch.Tensor] = {}
        window_n, window_images, window_t0 = 0, 0, time.perf_counter()
        consecutive_bad = 0
        grad_norm = None
        last_batch = None
        model.train()
        while state["step"] < tc.max_steps:
            bad = False
            for _ in range(tc.grad_accum):
                batch = _to_device(self._next_batch(data, state), self.device)
                with acc.accumulate(model):
                    with self._forward_ctx():
                        out = model(batch)
                    loss = out["loss"]
                    finite = bool(torch.isfinite(loss.detach()).all())
                    if self._any(not finite):
                        bad = True
                        culprit = {k: float(v) for k, v in out.get("logs", {}).items()
                                   if isinstance(v, (int, float, torch.Tensor))}
                        logger.warning("non-finite loss at step %d (rank-local loss %s, logs %s, keys %s)",
                                       state["step"], float(loss.detach().float()), culprit,
                                       batch.get("key", "n/a") if isinstance(batch, dict) else "n/a")
                    else:
                        acc.backward(loss)
                        window["loss"] = window.get("loss", 0.0) + loss.detach().float()
                        for name, value in out.get("logs", {}).items():
                            value = value.detach().float() if isinstance(value, torch.Tensor) else float(value)
                            window[name] = window.get(name, 0.0) + value
                        window_n += 1
                n_img = len(batch[self.batch_size_key]) if self.batch_size_key in batch else tc.batch_size
                window_images += n_img * self.world_size
                state["samples"] += n_img * self.world_size
                last_batch = batch
            if bad:
                optimizer.zero_grad(set_to_none=True)
                state["nonfinite_skipped"] += 1
                consecutive_bad += 1
                result.nonfinite_skipped = state["nonfinite_skipped"]
                if consecutive_bad >= tc.max_nonfinite:
                    raise NonFiniteLossError(
                        f"{consecutive_bad} consecutive optimizer steps had a non-finite loss (last at step "
                        f"{state['step']}, lr {max(scheduler.get_last_lr()):.3g}); lower optim.lr, enable "
                        "optim.clip_grad, or check the data (see the warnings above for batch keys)"
                    )
                continue
            consecutive_bad = 0
            lr_used = float(max(scheduler.get_last_lr()))  # the unscaled lr (layer decay only lowers groups)
            if oc.clip_grad and acc.sync_gradients:
                grad_norm = acc.clip_grad_norm_(model.parameters(), oc.clip_grad)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            state["step"] += 1
            step = state["step"]
            result.step = step
            if progress is not None:
                progress.update(1)
            if step % tc.log_every == 0 or step == tc.max_steps:
                result.last_metrics = self._log(metrics, step, window, window_n, window_images,
                                                window_t0, lr_used, grad_norm, state, progress)
                window, window_n, window_images, window_t0 = {}, 0, 0, time.perf_counter()
            if tc.image_every and (step % tc.image_every == 0 or step == tc.max_steps):
                self._visualize(model, last_batch, step)
            stop = self._any(self._stop_signal is not None)
            if step % tc.ckpt_every == 0 or step == tc.max_steps or stop:
                result.last_checkpoint = self._save(step, state, data)
            if stop:
                result.interrupted = True
                logger.warning("stopped by signal at step %d; resume with --resume auto", step)
                break
        if progress is not None:
            progress.close()

    def _log(self, metrics, step, window, window_n, window_images, t0, lr_used, grad_norm, state,
             progress) -> dict:
        acc = self.accelerator
        names = sorted(window)
        if names:
            vec = torch.stack([torch.as_tensor(window[k], dtype=torch.float32, device=self.device) for k in names])
        else:
            vec = torch.zeros(0, device=self.device)
        count = torch.tensor([float(window_n)], device=self.device)
        if self.world_size > 1:
            vec = acc.reduce(vec, reduction="sum")
            count = acc.reduce(count, reduction="sum")
        n = max(1.0, float(count.item()))
        values: dict[str, Any] = {k: float(v) / n for k, v in zip(names, vec.tolist())}
        values.setdefault("loss", float("nan"))
        elapsed = max(1e-9, time.perf_counter() - t0)
        values.update(
            lr=lr_used,
            img_per_s=window_images / elapsed,
            world_size=self.world_size,
            epoch=state["epoch"],
            samples=state["samples"],
            nonfinite_skipped=state["nonfinite_skipped"],
        )
        if grad_norm is not None:
            values["grad_norm"] = float(grad_norm)
        metrics.log(step, values)
        if progress is not None:
            progress.set_postfix(loss=f"{values['loss']:.4f}", img_s=f"{values['img_per_s']:.1f}",
                                 lr=f"{values['lr']:.2e}", refresh=False)
        return {"step": step, **values}

    def _visualize(self, model, batch, step: int) -> None:
        if batch is None or not self.is_main or zero_stage(self.accelerator) >= 3:
            return
        task = self._task  # not accelerator.unwrap_model: that imports deepspeed (slow) when installed
        fn = getattr(task, "visualize", None)
        if not callable(fn):
            return
        was_training = task.training
        task.eval()
        try:
            with torch.random.fork_rng(devices=[]), torch.no_grad(), self.accelerator.autocast(), \
                    self._forward_ctx():
                panels = fn(batch)
            if panels:
                path = save_panel_grid(panels, self.run_dir / "images" / f"recon_step-{step:08d}.png",
                                       title=f"step {step}")
                save_panel_grid(panels, self.run_dir / "recon_latest.png", title=f"step {step}")
                logger.debug("wrote %s", path)
            plot_loss_curve(self.run_dir / "metrics.jsonl", self.run_dir / "loss_curve.png")
        finally:
            task.train(was_training)

    def _save(self, step: int, state: dict, data) -> Path:
        loader_state = data.state_dict() if hasattr(data, "state_dict") else None
        trainer_state = {k: state[k] for k in ("nonfinite_skipped", "epoch", "samples")}
        consolidated = None
        if self.accelerator.state.deepspeed_plugin is not None:
            model = self._prepared
            if zero_stage(self.accelerator) >= 3:
                def consolidated():
                    return self.accelerator.get_state_dict(model)
            else:
                def consolidated():
                    return deepspeed_fp32_state(self._task)
        return self.ckpt.save(self.accelerator, step, trainer_state, loader_state, consolidated)
