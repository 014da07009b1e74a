"""Atomic, rotating training checkpoints under ``RUN_DIR/checkpoints/``, written without pickle.

Layout of one checkpoint ``checkpoints/step-00000100/``::

    model.safetensors                        weights (model_<i>.safetensors for further prepared models)
    optimizer_<i>.json + .safetensors        optimizer state (JSON skeleton + tensors; not under DeepSpeed)
    scheduler_<i>.json [+ .safetensors]      each lr scheduler / object registered with accelerate
    scaler.json                              the fp16 GradScaler, when there is one
    rng_state_rank<r>.json + .safetensors    per-process RNG states (Python, NumPy, torch CPU/CUDA)
    deepspeed/                               DeepSpeed only: its engine's checkpoint (see below)
    loader_state_rank<r>.json                each process's data-stream position
    trainer_state.json                       step, counters, world size, accelerate's step counter
    COMPLETE                                 completeness marker (written last)

Every file is JSON or safetensors (:mod:`echocare.engine.state_io`), so loading a checkpoint never
unpickles. The one exception is DeepSpeed's own engine state (``deepspeed/``: ZeRO optimizer
partitions and model states are torch pickles written by DeepSpeed); echocare loads those with
``torch.load(weights_only=True)`` and an allow-list of the DeepSpeed types they contain
(:data:`DEEPSPEED_SAFE_GLOBALS`), so no arbitrary callable can run. Checkpoints written by echocare
before this layout (accelerate's ``random_states_*.pkl``, ``custom_checkpoint_*.pkl``,
``optimizer.bin``) are refused with a clear error rather than unpickled.

Writes go to ``checkpoints/tmp-step-NNNNNNNN`` and are moved into place with
``os.replace`` only once complete, so a process killed mid-write leaves the
previous checkpoint as the newest valid one. ``latest()`` ignores directories
without the marker; stale ``tmp-*`` directories are removed at start-up.

Fault injection for tests: ``ECHOCARE_CKPT_FAULT="hang:STEP"`` (sleep forever)
or ``"crash:STEP"`` (``os._exit(3)``) on the main process after the state is
written but before the marker / rename of the checkpoint for ``STEP``.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any

from echocare.engine.state_io import CheckpointError, capture_rng, load_state, restore_rng, save_state

logger = logging.getLogger(__name__)

MARKER = "COMPLETE"
STATE_FILE = "trainer_state.json"
FORMAT = "echocare-ckpt-2"  # JSON + safetensors; older checkpoints held accelerate's pickles
DEEPSPEED_DIR = "deepspeed"
DEEPSPEED_TAG = "model"
#: Types DeepSpeed's own checkpoint pickles contain; ``torch.load(weights_only=True)`` may build these
#: (plain data holders, no callables) and nothing else.
DEEPSPEED_SAFE_GLOBALS: tuple[str, ...] = (
    "deepspeed.runtime.fp16.loss_scaler.LossScaler",  # plain attribute holders (no __setstate__/__reduce__)
    "deepspeed.runtime.fp16.loss_scaler.DynamicLossScaler",
    "deepspeed.runtime.zero.config.ZeroStageEnum",  # an int Enum
    "deepspeed.utils.tensor_fragment.fragment_address",  # a dataclass of two ints
)
_STEP_RE = re.compile(r"^step-(\d+)$")


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".part")
    with tmp.open("w") as fh:
        json.dump(data, fh, indent=1)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _maybe_inject_fault(step: int) -> None:
    spec = os.environ.get("ECHOCARE_CKPT_FAULT", "")
    if not spec:
        return
    kind, _, at = spec.partition(":")
    if at and int(at) != step:
        return
    logger.warning("ECHOCARE_CKPT_FAULT=%s: injecting a '%s' while writing checkpoint step %d", spec, kind, step)
    if kind == "hang":
        while True:
            time.sleep(3600)
    elif kind == "crash":
        os._exit(3)
    else:
        raise ValueError(f"ECHOCARE_CKPT_FAULT must be 'hang[:STEP]' or 'crash[:STEP]', got {spec!r}")


def is_complete(path: Path) -> bool:
    """Whether ``path`` is a finished checkpoint directory (marker and trainer state present)."""
    return (path / MARKER).is_file() and (path / STATE_FILE).is_file()


class CheckpointManager:
    """Save, find, load and rotate checkpoints of one run.

    Args:
        root: ``RUN_DIR/checkpoints``.
        keep_last: Number of complete checkpoints to keep.
    """

    def __init__(self, root: str | Path, keep_last: int = 3) -> None:
        self.root = Path(root)
        self.keep_last = int(keep_last)

    def checkpoints(self) -> list[tuple[int, Path]]:
        """Complete checkpoints as ``(step, path)``, oldest first."""
        if not self.root.is_dir():
            return []
        found = []
        for child in self.root.iterdir():
            match = _STEP_RE.match(child.name)
            if match and child.is_dir() and is_complete(child):
                found.append((int(match.group(1)), child))
        return sorted(found)

    def latest(self) -> Path | None:
        """The newest complete checkpoint, or None."""
        found = self.checkpoints()
        return found[-1][1] if found else None

    def resolve(self, resume: str | Path | None) -> Path | None:
        """Turn ``--resume`` into a checkpoint directory.

        Args:
            resume: None (fresh run), "auto" (newest complete checkpoint here, or a fresh
                run when there is none), a checkpoint directory, or a run directory.

        Raises:
            FileNotFoundError: An explicit path is not a complete checkpoint.
        """
        if resume is None or str(resume) == "":
            return None
        if str(resume) == "auto":
            path = self.latest()
            if path is None:
                logger.info("--resume auto: no complete checkpoint in %s, starting fresh", self.root)
            return path
        path = Path(resume)
        if (path / "checkpoints").is_dir():
            latest = CheckpointManager(path / "checkpoints").latest()
            if latest is None:
                raise FileNotFoundError(f"--resume {path}: run directory has no complete checkpoint")
            return latest
        if not is_complete(path):
            raise FileNotFoundError(f"--resume {path}: not a complete checkpoint (missing {MARKER} or {STATE_FILE})")
        return path

    def clean_stale(self) -> None:
        """Remove ``tmp-*`` leftovers of interrupted writes (call on the main process)."""
        if not self.root.is_dir():
            return
        for child in self.root.iterdir():
            if child.name.startswith("tmp-") or child.name.startswith("trash-"):
                logger.warning("removing incomplete checkpoint write %s", child)
                shutil.rmtree(child, ignore_errors=True)

    def save(self, accelerator, step: int, trainer_state: dict, loader_state: Any | None,
             consolidated: Any = None) -> Path:
        """Write a checkpoint for ``step`` atomically (call on every process).

        Args:
            accelerator: The run's Accelerator (model, optimizer, scheduler, RNG, scaler).
            step: Optimizer steps taken.
            trainer_state: JSON-able counters (saved by the main process).
            loader_state: This process's data position (JSON-able) or None.
            consolidated: Callable returning the full model state dict, used when the state holds no
                ``model.safetensors`` (DeepSpeed keeps its weights in its own shards); called on every
                process (ZeRO-3 gathers), written by the main process.

        Returns:
            The final checkpoint directory.
        """
        name = f"step-{step:08d}"
        final = self.root / name
        tmp = self.root / f"tmp-{name}"
        if accelerator.is_main_process:
            self.root.mkdir(parents=True, exist_ok=True)
            if tmp.exists():
                shutil.rmtree(tmp)
            tmp.mkdir()
        accelerator.wait_for_everyone()
        _save_training_state(accelerator, tmp)
        if consolidated is not None:
            full = consolidated()
            if accelerator.is_main_process and not (tmp / "model.safetensors").exists():
                from safetensors.torch import save_file

                tensors = {k: v.detach().to("cpu").clone().contiguous() for k, v in full.items()}
                save_file(tensors, str(tmp / "model.safetensors"), {"format": "pt"})
        rank = accelerator.process_index
        try:
            _write_json(tmp / f"loader_state_rank{rank}.json", loader_state)
        except (TypeError, ValueError) as err:
            raise TypeError(f"data loader state_dict() must be JSON-serialisable for checkpoints: {err}") from err
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            _maybe_inject_fault(step)
            state = dict(trainer_state, step=step, world_size=accelerator.num_processes, time=time.time(),
                         accelerate_step=int(getattr(accelerator, "step", 0)), format=FORMAT)
            _write_json(tmp / STATE_FILE, state)
            (tmp / MARKER).write_text(f"{step}\n")
            if final.exists():  # re-saving a step (e.g. final save right after a periodic one)
                trash = self.root / f"trash-{name}"
                os.replace(final, trash)
                shutil.rmtree(trash, ignore_errors=True)
            os.replace(tmp, final)
            _fsync_dir(self.root)
            self._rotate()
            logger.info("checkpoint saved: %s", final)
        accelerator.wait_for_everyone()
        return final

    def _rotate(self) -> None:
        found = self.checkpoints()
        for _, path in found[: max(0, len(found) - self.keep_last)]:
            shutil.rmtree(path, ignore_errors=True)

    def load(self, accelerator, path: str | Path) -> tuple[dict, Any | None]:
        """Restore model, optimizer, schedulers, scaler and RNG from ``path`` without unpickling.

        Returns:
            (trainer state, this rank's loader state).

        Raises:
            FileNotFoundError: ``path`` is not a complete checkpoint.
            CheckpointError: ``path`` was written in the old pickled layout, or a file in it is malformed
                (a ``ValueError``).
        """
        path = Path(path)
        if not is_complete(path):
            raise FileNotFoundError(f"not a complete checkpoint: {path}")
        state = _read_json(path / STATE_FILE)
        if state.get("format") != FORMAT:
            pickles = sorted(p.name for p in path.iterdir() if p.suffix in (".pkl", ".bin", ".pt"))
            raise CheckpointError(f"{path} was written by an older echocare in accelerate's pickled layout "
                             f"({', '.join(pickles) or 'no format tag'}); echocare never unpickles, so it cannot "
                             "resume from it (export its model.safetensors, or start a fresh run)")
        _load_training_state(accelerator, path)
        if "accelerate_step" in state:
            accelerator.step = int(state["accelerate_step"])
        saved_world = int(state.get("world_size", accelerator.num_processes))
        loader_file = path / f"loader_state_rank{accelerator.process_index}.json"
        loader_state = None
        if saved_world != accelerator.num_processes:
            logger.warning(
                "checkpoint %s was written by %d process(es), resuming with %d: the data stream restarts "
                "from its seed instead of the exact saved position", path, saved_world, accelerator.num_processes,
            )
        elif loader_file.is_file():
            loader_state = _read_json(loader_file)
        logger.info("resumed from %s at step %d", path, state["step"])
        return state, loader_state


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{path}: not valid JSON ({err})") from err


def _deepspeed_engine(accelerator, model):
    """``model`` when it is a DeepSpeed engine of a DeepSpeed run, else None."""
    if getattr(accelerator.state, "deepspeed_plugin", None) is None:
        return None
    return model if hasattr(model, "save_checkpoint") and hasattr(model, "load_checkpoint") else None


def _model_file(i: int) -> str:
    return "model.safetensors" if i == 0 else f"model_{i}.safetensors"


def _save_training_state(accelerator, folder: Path) -> None:
    """Write models, optimizers, schedulers, scaler and this rank's RNG (collective: every process)."""
    from safetensors.torch import save_model

    main = accelerator.is_main_process
    deepspeed_used = False
    for i, model in enumerate(accelerator._models):
        engine = _deepspeed_engine(accelerator, model)
        if engine is not None:  # ZeRO shards: every rank writes its partition
            engine.save_checkpoint(str(folder / DEEPSPEED_DIR), tag=f"{DEEPSPEED_TAG}{i}")
            deepspeed_used = True
        elif main:
            save_model(accelerator.unwrap_model(model), str(folder / _model_file(i)), {"format": "pt"})
    if main:
        if not deepspeed_used:
            for i, opt in enumerate(accelerator._optimizers):
                save_state(opt.state_dict(), folder / f"optimizer_{i}")
        for i, obj in enumerate([*accelerator._schedulers, *accelerator._custom_objects]):
            save_state(obj.state_dict(), folder / f"scheduler_{i}")
        if accelerator.scaler is not None:
            save_state(accelerator.scaler.state_dict(), folder / "scaler")
    save_state(capture_rng(), folder / f"rng_state_rank{accelerator.process_index}")


def _load_training_state(accelerator, folder: Path) -> None:
    """Inverse of :func:`_save_training_state` (every process reads what it needs)."""
    from safetensors.torch import load_model

    deepspeed_used = False
    for i, model in enumerate(accelerator._models):
        engine = _deepspeed_engine(accelerator, model)
        if engine is not None:
            _safe_deepspeed_load(engine, folder / DEEPSPEED_DIR, f"{DEEPSPEED_TAG}{i}")
            deepspeed_used = True
            continue
        file = folder / _model_file(i)
        try:
            load_model(accelerator.unwrap_model(model), str(file), strict=True, device=str(accelerator.device))
        except (OSError, RuntimeError, ValueError) as err:
            raise CheckpointError(f"{file}: cannot restore the model from it ({err})") from err
        except Exception as err:  # safetensors' own SafetensorError (malformed header)
            raise CheckpointError(f"{file}: not a readable safetensors file ({err})") from err
    if not deepspeed_used:
        for i, opt in enumerate(accelerator._optimizers):
            opt.load_state_dict(load_state(folder / f"optimizer_{i}"))
    for i, obj in enumerate([*accelerator._schedulers, *accelerator._custom_objects]):
        obj.load_state_dict(load_state(folder / f"scheduler_{i}"))
    if accelerator.scaler is not None:
        accelerator.scaler.load_state_dict(load_state(folder / "scaler"))
    rng = folder / f"rng_state_rank{accelerator.process_index}.json"
    if rng.is_file():
        restore_rng(load_state(rng.with_suffix("")))
    else:
        logger.warning("%s has no RNG state for rank %d; random streams restart from the seed",
                       folder, accelerator.process_index)


def _deepspeed_safe_globals() -> list:
    """DeepSpeed/torch types inside DeepSpeed's checkpoint pickles that ``weights_only`` may build."""
    import importlib

    found = []
    for dotted in DEEPSPEED_SAFE_GLOBALS:
        module, _, name = dotted.rpartition(".")
        try:
            found.append(getattr(importlib.import_module(module), name))
        except (ImportError, AttributeError):
            logger.debug("DeepSpeed safe global %s not found in this version", dotted)
    return found


class _WeightsOnlyCheckpointEngine:
    """Wraps DeepSpeed's checkpoint engine so that ``load`` uses ``torch.load(weights_only=True)``."""

    def __init__(self, inner) -> None:
        self._inner = inner

    def __getattr__(self, name: str):
        return getattr(self._inner, name)

    def load(self, path: str, map_location=None):
        import torch

        try:
            with torch.serialization.safe_globals(_deepspeed_safe_globals()):
                return torch.load(path, map_location=map_location, weights_only=True)
        except Exception as err:  # weights_only refuses anything not allow-listed: UnpicklingError
            raise CheckpointError(f"{path}: refused to load DeepSpeed state with weights_only=True ({err})") from err


def _safe_deepspeed_load(engine, folder: Path, tag: str) -> None:
    original = engine.checkpoint_engine
    engine.checkpoint_engine = _WeightsOnlyCheckpointEngine(original)
    try:
        load_path, _ = engine.load_checkpoint(str(folder), tag=tag, load_module_strict=True,
                                              load_optimizer_states=True, load_lr_scheduler_states=False)
    finally:
        engine.checkpoint_engine = original
    if load_path is None:
        raise CheckpointError(f"{folder}: no DeepSpeed checkpoint with tag {tag!r}")
