"""Build the :class:`accelerate.Accelerator` for this launch (single process, DDP or DeepSpeed).

The same code runs under ``python -m echocare``, ``accelerate launch --multi_gpu``
and ``accelerate launch --use_deepspeed``; what differs is read from the
environment accelerate's launcher sets. Traps handled here:

* ``Accelerator(cpu=True)`` silently drops DeepSpeed, so ``cpu=True`` is only
  passed when there is no CUDA device *and* DeepSpeed is not requested.
* DeepSpeed on CPU needs ``DS_ACCELERATOR=cpu`` (set before deepspeed is
  imported) and a gloo process group (``InitProcessGroupKwargs(backend="gloo")``).
* ``precision="auto"`` picks bf16 where a tiny bf16 autocast matmul works
  (Ampere+ GPUs, recent CPUs), else fp32.
"""

from __future__ import annotations

import logging
import os
from contextlib import nullcontext
from datetime import timedelta
from typing import Callable, ContextManager

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


def cpu_has_native_bf16(cpuinfo: str | None = None) -> bool:
    """Whether the CPU computes bf16 natively (x86 AVX512-BF16 / AMX-BF16, Arm BF16), from /proc/cpuinfo.

    Without it, bf16 autocast on CPU is emulated and much slower than fp32, so ``precision: auto`` keeps fp32.

    Args:
        cpuinfo: Text of /proc/cpuinfo (read when None; unreadable = False).
    """
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
                cpuinfo = fh.read()
        except OSError:
            return False
    flags: set[str] = set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in ("flags", "features"):
            flags.update(value.split())
    return bool(flags & {"avx512_bf16", "amx_bf16", "bf16"})


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
    if precision == "auto":  # bf16 where it is native; emulated CPU bf16 is slower than fp32
        native = device_type != "cpu" or cpu_has_native_bf16()
        return "bf16" if native and bf16_supported(device_type) else "no"
    if precision == "bf16":
        if not bf16_supported(device_type):
            raise ValueError(f"train.precision=bf16 is not supported on this {device_type}; use auto or fp32")
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
