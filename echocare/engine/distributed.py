"""Build the :class:`accelerate.Accelerator` for this launch (single process, DDP or DeepSpeed).

The same code runs under ``python -m echocare``, ``accelerate launch --multi_gpu``
and ``accelerate launch --use_deepspeed``; what differs is read from the
environment accelerate's launcher sets. Traps handled here:

* ``Accelerator(cpu=True)`` silently drops DeepSpeed, so ``cpu=True`` is only
  passed when there is no CUDA device *and* DeepSpeed is not requested.
* DeepSpeed on CPU needs ``DS_ACCELERATOR=cpu`` (set before deepspeed is
  imported) and a gloo process group (``InitProcessGroupKwargs(backend="gloo")``).
* ``precision="auto"`` picks bf16 where a tiny bf16 autocast matmul works and, on CPU, where the
  hardware has bf16 arithmetic (AVX512-BF16 or AMX; elsewhere bf16 is emulated and slower than
  fp32), else fp32.
"""

from __future__ import annotations

import logging
import os
from contextlib import nullcontext
from datetime import timedelta
from typing import Any, Callable, ContextManager

import torch

logger = logging.getLogger(__name__)


def deepspeed_requested() -> bool:
    """Whether ``accelerate launch`` asked for DeepSpeed (``--use_deepspeed`` or a config file)."""
    return os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() in ("1", "true", "yes")


def bf16_supported(device_type: str) -> bool:
    """Try a tiny bf16 autocast matmul on ``device_type`` ("cuda" or "cpu")."""
    try:
        if device_type == "cuda":
            if not torch.cuda.is_available() or not torch.cuda.is_bf16_supported():
                return False
        x = torch.randn(8, 8, device=device_type)
        with torch.autocast(device_type=device_type, dtype=torch.bfloat16):
            y = x @ x
        return bool(y.dtype == torch.bfloat16 and torch.isfinite(y.float()).all())
    except (RuntimeError, AssertionError) as err:  # backend without bf16 kernels
        logger.debug("bf16 probe failed on %s: %s", device_type, err)
        return False


def cpu_native_bf16() -> bool:
    """Whether this CPU multiplies bf16 in hardware (AVX512-BF16 or AMX). Without it, oneDNN emulates bf16
    GEMMs and a Swin-T step under bf16 autocast ran ~20x *slower* than fp32 (bench/results/pretrain_profile.md)."""
    checks = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    try:
        return any(bool(check()) for check in checks if check is not None)
    except RuntimeError:  # pragma: no cover - a torch build without the cpuinfo probes
        return False


def resolve_precision(precision: str, device_type: str) -> str:
    """Map ``train.precision`` to accelerate's ``mixed_precision`` ("no" | "bf16" | "fp16").

    Args:
        precision: "auto", "bf16", "fp16" or "fp32".
        device_type: "cuda" or "cpu".

    Raises:
        ValueError: fp16 requested on CPU, or bf16 requested where unsupported.
    """
    if precision == "fp32":
        return "no"
    if precision == "auto":
        if device_type == "cpu" and not cpu_native_bf16():
            return "no"  # emulated bf16 is far slower than fp32
        return "bf16" if bf16_supported(device_type) else "no"
    if precision == "bf16":
        if not bf16_supported(device_type):
            raise ValueError(f"train.precision=bf16 is not supported on this {device_type}; use auto or fp32")
        if device_type == "cpu" and not cpu_native_bf16():
            logger.warning("train.precision=bf16 on a CPU without AVX512-BF16/AMX: bf16 matmuls are emulated and "
                           "much slower than fp32 (precision=auto would pick fp32 here)")
        return "bf16"
    if precision == "fp16":
        if device_type != "cuda":
            raise ValueError("train.precision=fp16 needs a CUDA device; use bf16 or fp32 on CPU")
        return "fp16"
    raise ValueError(f"unknown precision {precision!r}; valid: auto, bf16, fp16, fp32")


def make_accelerator(precision: str = "auto", grad_accum: int = 1, project_dir: str | None = None,
                     timeout_s: int = 1800):
    """Create the Accelerator for the current launch.

    Args:
        precision: ``train.precision``.
        grad_accum: Gradient-accumulation micro-batches per optimizer step.
        project_dir: Run directory (accelerate's project dir).
        timeout_s: Process-group timeout (collectives that hang longer abort).

    Returns:
        A configured ``accelerate.Accelerator``.
    """
    use_ds = deepspeed_requested()
    has_cuda = torch.cuda.is_available()
    if use_ds and not has_cuda:
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    from accelerate import Accelerator
    from accelerate.utils import InitProcessGroupKwargs

    # A launcher-provided mixed precision (accelerate config / --mixed_precision) wins over "auto".
    launcher_mp = os.environ.get("ACCELERATE_MIXED_PRECISION")
    if precision == "auto" and launcher_mp in ("bf16", "fp16"):
        mixed = launcher_mp
    else:
        mixed = resolve_precision(precision, "cuda" if has_cuda else "cpu")
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 and not use_ds:
        # A single, non-launched process may run several trainings in a row (protocols, notebooks, tests):
        # accelerate's process-wide state would pin the first run's precision, so start each run fresh.
        from accelerate.state import AcceleratorState

        AcceleratorState._reset_state(reset_partial_state=True)
    pg_kwargs = InitProcessGroupKwargs(timeout=timedelta(seconds=timeout_s))
    if not has_cuda and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        pg_kwargs.backend = "gloo"  # only meaningful when a process group is actually created
    accelerator = Accelerator(
        cpu=not has_cuda and not use_ds,
        mixed_precision=mixed,
        gradient_accumulation_steps=grad_accum,
        project_dir=project_dir,
        kwargs_handlers=[pg_kwargs],
    )
    logger.info(
        "accelerator: %s, %d process(es), device %s, mixed precision %s",
        accelerator.distributed_type, accelerator.num_processes, accelerator.device, accelerator.mixed_precision,
    )
    return accelerator


def configure_deepspeed(accelerator, micro_batch: int, clip_grad: float | None) -> None:
    """Fill the DeepSpeed config values accelerate cannot infer (no DataLoader is prepared).

    Args:
        accelerator: The run's Accelerator (no-op unless it uses DeepSpeed).
        micro_batch: Per-process micro-batch (``train.batch_size``).
        clip_grad: Max gradient norm (``optim.clip_grad``); None disables clipping.
    """
    plugin = getattr(accelerator.state, "deepspeed_plugin", None)
    if plugin is None:
        return
    cfg = plugin.deepspeed_config
    cfg["train_micro_batch_size_per_gpu"] = int(micro_batch)
    cfg["train_batch_size"] = int(micro_batch * accelerator.gradient_accumulation_steps * accelerator.num_processes)
    cfg["gradient_accumulation_steps"] = int(accelerator.gradient_accumulation_steps)
    cfg["gradient_clipping"] = float(clip_grad) if clip_grad else 0.0
    stage = cfg.get("zero_optimization", {}).get("stage", 0)
    logger.info("DeepSpeed ZeRO stage %s, micro batch %d, clipping %s", stage, micro_batch, clip_grad)


def zero_stage(accelerator) -> int:
    """The DeepSpeed ZeRO stage in use (0 when DeepSpeed is not used)."""
    plugin = getattr(accelerator.state, "deepspeed_plugin", None)
    if plugin is None:
        return 0
    return int(plugin.deepspeed_config.get("zero_optimization", {}).get("stage", 0))


def deepspeed_autocast(accelerator) -> Callable[[], ContextManager]:
    """Context factory for the forward pass.

    DeepSpeed bf16/fp16 casts the weights but not the inputs (and accelerate's own autocast is off
    under DeepSpeed), so the forward runs under ``torch.autocast`` there; elsewhere a no-op.
    """
    mp = str(accelerator.mixed_precision)
    if getattr(accelerator.state, "deepspeed_plugin", None) is None or mp not in ("bf16", "fp16"):
        return nullcontext
    dtype = torch.bfloat16 if mp == "bf16" else torch.float16
    device_type = accelerator.device.type

    def ctx() -> ContextManager:
        return torch.autocast(device_type=device_type, dtype=dtype)

    return ctx


def deepspeed_fp32_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """ZeRO-1/2 full state dict with the fp32 master weights (collective: call on every rank)."""
    from deepspeed.utils import safe_get_full_fp32_param

    state = module.state_dict()  # buffers, and the (possibly bf16) weights as a fallback
    for name, param in module.named_parameters():
        full = safe_get_full_fp32_param(param)
        if full is not None:
            state[name] = full.detach().float().cpu()
    return state


def to_device(batch: Any, device: torch.device) -> Any:
    """Move the tensors of a batch (a tensor, a dict of them, or a list / tuple of tensors) to ``device``."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)) and batch and isinstance(batch[0], torch.Tensor):
        return type(batch)(to_device(v, device) for v in batch)
    return batch
