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
If it has ``close()``, that is called when ``fit`` ends (worker processes kept across epochs).
The batch size used for img/s is ``len(batch[batch_size_key])``.

Usage::

    trainer = Trainer(cfg.train, cfg.optim, run_dir, config=cfg)
    loader = build_loader(...)            # after the Trainer: the process group exists now
    result = trainer.fit(task, loader, resume="auto")

Periodic validation with best-weight selection (``fit(..., evaluate=fn, eval_every=N, select_metric=...)``)
lives in :mod:`echocare.engine.validation`; the resolved-config check on resume in :mod:`echocare.engine.state`.

``Trainer`` owns accelerate (single process, DDP, DeepSpeed ZeRO-1/2), the
optimizer and per-step warmup+cosine schedule, gradient accumulation and
clipping, bf16 autocast, the non-finite guard (a step whose loss or gradient norm is NaN/inf is skipped and
counted; weights with NaN/inf are never checkpointed), checkpoint/resume (see
:mod:`echocare.engine.checkpoint`), ``metrics.jsonl`` + TensorBoard + tqdm,
and the loss-curve / panel PNGs in the run directory.
"""

from __future__ import annotations

import json
import logging
import signal
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from echocare.config import OptimConfig, TrainConfig, derive_schedule, save_config
from echocare.engine.checkpoint import CheckpointManager
from echocare.engine.distributed import (
    configure_deepspeed,
    deepspeed_autocast,
    deepspeed_fp32_state,
    make_accelerator,
    to_device,
    zero_stage,
)
from echocare.engine.logging_utils import MetricsLogger, make_progress
from echocare.engine.optim import build_optimizer, build_param_groups
from echocare.engine.schedule import build_scheduler
from echocare.engine.signals import StopFlag, catch_stop_signals
from echocare.engine.state import (
    BEST_FILE,
    Evaluation,
    FitResult,
    FitSession,
    NonFiniteLossError,
    StepWindow,
    TrainState,
    check_finite_weights,
    check_resume_config,
    config_hash,
    default_config_flat,
    flatten_config,
)
from echocare.engine.thread_share import ThreadShare, join_thread_share
from echocare.engine.threads import configure_threads
from echocare.engine.validation import run_validation, write_panels
from echocare.engine.viz import plot_loss_curve

logger = logging.getLogger(__name__)


class Trainer:
    """Run a task over a data stream with accelerate.

    Creating the Trainer creates the Accelerator (and the process group), seeds every RNG with
    ``train.seed`` (identical model init on all ranks) and creates the run directory; ``fit`` writes the
    resolved ``config.yaml`` once the resume check has passed.

    Args:
        train: Training-loop section.
        optim: Optimizer section.
        run_dir: Output directory of the run.
        config: The full config dataclass (written to ``config.yaml``, checked on resume) or None.
        batch_size_key: Batch entry whose length is the micro-batch size.
    """

    def __init__(self, train: TrainConfig, optim: OptimConfig, run_dir: str | Path, config: Any = None,
                 batch_size_key: str = "image") -> None:
        from accelerate.utils import set_seed

        self.train_cfg = train
        self.optim_cfg = optim
        self.config = config
        self.run_dir = Path(run_dir)
        self.batch_size_key = batch_size_key
        self.accelerator = make_accelerator(train.precision, train.grad_accum, project_dir=str(self.run_dir))
        # intra-op threads = cores available / local processes (at most 2 next to a GPU: engine/threads.py)
        self.on_accelerator = self.accelerator.device.type != "cpu"
        self.threads = configure_threads(accelerator=self.on_accelerator)
        self.share: ThreadShare | None = None  # registered while fit() runs (see engine/thread_share.py)
        self.derived = derive_schedule(train, optim, self.accelerator.num_processes)
        self.ckpt = CheckpointManager(self.run_dir / "checkpoints", keep_last=train.keep_last)
        self.config_flat = flatten_config(config) if config is not None else None
        self._stop = StopFlag()
        set_seed(train.seed)
        if self.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self.ckpt.clean_stale()
        self.accelerator.wait_for_everyone()

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

    def _any(self, flag: bool) -> bool:
        """True on every rank when ``flag`` is true on any rank."""
        if self.world_size == 1:
            return flag
        t = torch.tensor([1.0 if flag else 0.0], device=self.device)
        return bool(self.accelerator.reduce(t, reduction="sum").item() > 0)

    # ------------------------------------------------------------------ fit
    def fit(self, task: nn.Module, data: Iterable[dict], resume: str | Path | None = None,
            evaluate: Callable[[nn.Module], dict[str, float]] | None = None, eval_every: int = 0,
            select_metric: str | None = None, lower_is_better: bool = False) -> FitResult:
        """Train ``task`` on ``data`` until ``train.max_steps`` optimizer steps.

        Args:
            task: The task module (see module docstring).
            data: Iterable of dict batches for this process.
            resume: None, "auto" or a checkpoint / run directory.
            evaluate: ``fn(task) -> {name: value}`` run on the main process every ``eval_every`` steps.
            eval_every: Optimizer steps between evaluations (0 = never).
            select_metric: Name in ``evaluate``'s result whose best value selects ``RUN/best.safetensors``
                (None: values are only logged).
            lower_is_better: Direction of ``select_metric``.

        Returns:
            A :class:`FitResult`.

        Raises:
            NonFiniteLossError: ``train.max_nonfinite`` consecutive steps had a non-finite loss.
            ConfigChangedError: resuming with a different resolved config (see :mod:`echocare.engine.state`).
        """
        session = self._start(task, data, resume, Evaluation(evaluate, eval_every, select_metric, lower_is_better))
        self.share = join_thread_share(self.threads, self.train_cfg.share_threads, self.on_accelerator)
        try:
            with catch_stop_signals(self._stop):
                self._loop(session)
        finally:
            if self.share is not None:
                self.share.close()
                self.share = None
            if session.iterator is not None and hasattr(session.iterator, "close"):
                # shut the loader's worker processes down now: they ignore SIGTERM/SIGINT, so left to the
                # interpreter's exit (multiprocessing terminates, then joins daemonic children) they would hang it
                session.iterator.close()
                session.iterator = None
            close = getattr(session.data, "close", None)
            if callable(close):  # a loader that keeps worker processes across epochs
                close()
            session.metrics.close()
            if session.progress is not None:
                session.progress.close()
        if self.is_main:
            plot_loss_curve(session.metrics.path, self.run_dir / "loss_curve.png")
        return session.result

    def _start(self, task: nn.Module, data: Iterable[dict], resume: str | Path | None,
               evaluation: Evaluation) -> FitSession:
        """Optimizer, schedule, accelerate preparation, resume (with the config check), loggers."""
        from accelerate.utils import set_seed

        tc, oc, acc = self.train_cfg, self.optim_cfg, self.accelerator
        if tc.grad_checkpointing:
            fn = getattr(task, "set_grad_checkpointing", None)
            if not callable(fn):
                raise ValueError(f"train.grad_checkpointing=true but {type(task).__name__} has no "
                                 "set_grad_checkpointing(enable)")
            fn(True)
        if tc.compile:
            task.compile()  # in place: parameters, state dict keys and checkpoints are unchanged
        lr_groups = getattr(task, "lr_groups", None)
        groups = build_param_groups(task, oc.weight_decay, lr_groups=lr_groups() if callable(lr_groups) else None)
        optimizer = build_optimizer(groups, self.derived.peak_lr, oc.betas, oc.eps)
        scheduler = build_scheduler(optimizer, self.derived.warmup_steps, self.derived.total_steps,
                                    oc.schedule, oc.min_lr_ratio)
        configure_deepspeed(acc, tc.batch_size, oc.clip_grad)
        set_seed(tc.seed + self.rank)  # per-rank stochasticity (drop path) from here on
        forward_ctx = deepspeed_autocast(acc)
        model, optimizer = acc.prepare(task, optimizer)
        acc.register_for_checkpointing(scheduler)

        state = TrainState()
        ckpt_path = self.ckpt.resolve(resume)
        if ckpt_path is not None:
            saved, loader_state = self.ckpt.load(acc, ckpt_path)
            check_resume_config(saved, self.config_flat, getattr(self.train_cfg, "allow_config_change", False),
                                ckpt_path, defaults=default_config_flat(self.config))
            state.restore(saved)
            if loader_state is not None and hasattr(data, "load_state_dict"):
                data.load_state_dict(loader_state)
            elif loader_state is None and hasattr(data, "load_state_dict"):
                logger.warning("no data position in %s; the stream restarts from its seed", ckpt_path)
        if self.is_main and self.config is not None:
            derived = dict(self.derived.to_dict(), mixed_precision=str(acc.mixed_precision))
            save_config(self.config, self.run_dir / "config.yaml", extra=derived)
            logger.info("derived: %s", json.dumps(derived))
        metrics = MetricsLogger(self.run_dir, enabled=self.is_main, tensorboard=tc.tensorboard)
        if ckpt_path is not None:
            metrics.truncate_after(state.step)
        else:
            metrics.set_aside()  # each step once: an earlier attempt's lines are kept in metrics.jsonl.N
        best = self.run_dir / BEST_FILE
        result = FitResult(step=state.step, nonfinite_skipped=state.nonfinite_skipped, best_value=state.best_value,
                           best_step=state.best_step, best_weights=best if state.best_step is not None else None)
        progress = make_progress(tc.max_steps, state.step, tc.progress and self.is_main)
        return FitSession(task, model, optimizer, scheduler, data, metrics, forward_ctx, evaluation, state, result,
                        progress)

    def _loop(self, s: FitSession) -> None:
        """Optimizer steps until ``train.max_steps`` or a stop signal."""
        tc = self.train_cfg
        s.model.train()
        while s.state.step < tc.max_steps:
            if not self._accumulate(s):
                self._skip_step(s, "loss")
                continue
            if not self._grad_norm_finite(s):
                self._skip_step(s, "gradient norm")
                continue
            self._optimizer_step(s)
            if self.share is not None:
                self.share.poll()
            step = s.state.step
            if step % tc.log_every == 0 or step == tc.max_steps:
                s.result.last_metrics = self._log(s)
            if tc.image_every and (step % tc.image_every == 0 or step == tc.max_steps):
                self._visualize(s, step)
            if s.evaluation.due(step, tc.max_steps):
                self._evaluate(s, step)
            stop = self._any(self._stop.signal is not None)
            if step % tc.ckpt_every == 0 or step == tc.max_steps or stop:
                s.result.last_checkpoint = self._save(s, step)
            if stop:
                s.result.interrupted = True
                s.result.stop_signal = self._stop.signal or signal.SIGTERM  # another rank got it first
                logger.warning("stopped by signal at step %d; resume with --resume auto", step)
                break

    def _next_batch(self, s: FitSession) -> dict:
        """The next batch; an exhausted iterable starts its next epoch."""
        for attempt in range(2):
            if s.iterator is None:
                s.iterator = iter(s.data)
            try:
                return next(s.iterator)
            except StopIteration:
                s.iterator = None
                s.state.epoch += 1
                if attempt == 1:
                    break
        raise RuntimeError("the data stream yielded no batch in a whole pass; check data.shards and the "
                           "number of samples per process (batch_size x processes)")

    def _accumulate(self, s: FitSession) -> bool:
        """Forward + backward over ``train.grad_accum`` micro-batches; False if a loss was non-finite."""
        tc, acc = self.train_cfg, self.accelerator
        ok = True
        for _ in range(tc.grad_accum):
            batch = to_device(self._next_batch(s), self.device)
            with acc.accumulate(s.model):
                with s.forward_ctx():
                    out = s.model(batch)
                loss = out["loss"]
                if self._any(not bool(torch.isfinite(loss.detach()).all())):
                    ok = False
                    culprit = {k: float(v) for k, v in out.get("logs", {}).items()
                               if isinstance(v, (int, float, torch.Tensor))}
                    logger.warning("non-finite loss at step %d (rank-local loss %s, logs %s, keys %s)",
                                   s.state.step, float(loss.detach().float()), culprit,
                                   batch.get("key", "n/a") if isinstance(batch, dict) else "n/a")
                else:
                    acc.backward(loss)
                    s.window.add(loss, out.get("logs", {}))
            n_img = len(batch[self.batch_size_key]) if self.batch_size_key in batch else tc.batch_size
            s.window.images += n_img * self.world_size
            s.state.samples += n_img * self.world_size
            s.last_batch = batch
        return ok

    def _skip_step(self, s: FitSession, what: str) -> None:
        """Drop the gradients of a step with a non-finite loss or gradient norm; abort after too many in a row."""
        s.optimizer.zero_grad(set_to_none=True)
        s.state.nonfinite_skipped += 1
        s.consecutive_bad += 1
        s.result.nonfinite_skipped = s.state.nonfinite_skipped
        if s.consecutive_bad >= self.train_cfg.max_nonfinite:
            raise NonFiniteLossError(
                f"{s.consecutive_bad} consecutive optimizer steps had a non-finite loss or gradient norm (the "
                f"last: {what}, at step {s.state.step}, lr {max(s.scheduler.get_last_lr()):.3g}); lower optim.lr, "
                "enable optim.clip_grad, or check the data (see the warnings above for batch keys)"
            )

    def _grad_norm_finite(self, s: FitSession) -> bool:
        """Clip (``optim.clip_grad``; without it only measure) and check the total gradient norm.

        Under fp16 the grad scaler already skips steps with overflowed gradients (that is how loss scaling
        works), and DeepSpeed clips and checks inside its own step; both are left to themselves.
        """
        oc, acc = self.optim_cfg, self.accelerator
        s.grad_norm = None
        if not acc.sync_gradients or acc.state.deepspeed_plugin is not None:
            return True
        if not oc.clip_grad and acc.scaler is not None:
            return True
        s.grad_norm = acc.clip_grad_norm_(s.model.parameters(), oc.clip_grad or float("inf"))
        if acc.scaler is not None or s.grad_norm is None:
            return True
        norm = torch.as_tensor(s.grad_norm).detach().float()
        if self._any(not bool(torch.isfinite(norm).all())):
            logger.warning("non-finite gradient norm at step %d (%s): step skipped", s.state.step, float(norm))
            return False
        return True

    def _optimizer_step(self, s: FitSession) -> None:
        """Step optimizer and schedule (gradients already clipped), count the step."""
        s.consecutive_bad = 0
        s.lr = float(max(s.scheduler.get_last_lr()))  # the unscaled lr (layer decay only lowers groups)
        s.optimizer.step()
        s.scheduler.step()
        s.optimizer.zero_grad(set_to_none=True)
        s.state.step += 1
        s.result.step = s.state.step
        if s.progress is not None:
            s.progress.update(1)

    def _log(self, s: FitSession) -> dict:
        """Reduce the window over ranks, write one metrics.jsonl line, start a new window."""
        w = s.window
        reduce_sum = (lambda t: self.accelerator.reduce(t, reduction="sum")) if self.world_size > 1 else None
        values: dict[str, Any] = w.means(self.device, reduce_sum)
        elapsed = max(1e-9, time.perf_counter() - w.t0)
        values.update(lr=s.lr, img_per_s=w.images / elapsed, world_size=self.world_size, epoch=s.state.epoch,
                      samples=s.state.samples, nonfinite_skipped=s.state.nonfinite_skipped)
        if s.grad_norm is not None:
            values["grad_norm"] = float(s.grad_norm)
        s.metrics.log(s.state.step, values)
        if s.progress is not None:
            s.progress.set_postfix(loss=f"{values['loss']:.4f}", img_s=f"{values['img_per_s']:.1f}",
                                   lr=f"{values['lr']:.2e}", refresh=False)
        s.window = StepWindow()
        return {"step": s.state.step, **values}

    def _evaluate(self, s: FitSession, step: int) -> None:
        run_validation(s, step, self.run_dir / BEST_FILE, self.is_main, self.world_size)

    def _visualize(self, s: FitSession, step: int) -> None:
        if self.is_main and zero_stage(self.accelerator) < 3:
            write_panels(s, step, self.run_dir, self.accelerator.autocast)

    def _save(self, s: FitSession, step: int) -> Path:
        if zero_stage(self.accelerator) < 3:  # ZeRO-3 holds partitions only; its consolidated copy is not checked
            check_finite_weights(s.task.state_dict().items(), f"checkpoint step {step}")
        loader_state = s.data.state_dict() if hasattr(s.data, "state_dict") else None
        trainer_state = {k: v for k, v in s.state.to_dict().items() if k != "step"}
        if self.config_flat is not None:
            trainer_state.update(config=self.config_flat, config_hash=config_hash(self.config_flat))
        consolidated = None
        if self.accelerator.state.deepspeed_plugin is not None:
            model, task = s.model, s.task
            if zero_stage(self.accelerator) >= 3:
                def consolidated():
                    return self.accelerator.get_state_dict(model)
            else:
                def consolidated():
                    return deepspeed_fp32_state(task)
        return self.ckpt.save(self.accelerator, step, trainer_state, loader_state, consolidated)
