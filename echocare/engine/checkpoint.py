"""Atomic, rotating training checkpoints under ``RUN_DIR/checkpoints/``.

Layout of one checkpoint ``checkpoints/step-00000100/``::

    model.safetensors, optimizer.bin, ...   accelerate ``save_state`` (or DeepSpeed shards)
    random_states_<rank>.pkl                 per-process RNG states (accelerate)
    custom_checkpoint_0.pkl                  the lr scheduler (registered with accelerate)
    loader_state_rank<r>.json                each process's data-stream position
    trainer_state.json                       step, counters, world size, config hash
    COMPLETE                                 completeness marker (written last)

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

logger = logging.getLogger(__name__)

MARKER = "COMPLETE"
STATE_FILE = "trainer_state.json"
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
            consolidated: Callable returning the full model state dict, used when accelerate's
                state holds no ``model.safetensors`` (DeepSpeed writes sharded pickles); called on
                every process (ZeRO-3 gathers), written by the main process.

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
        accelerator.save_state(str(tmp))
        if consolidated is not None:
            full = consolidated()
            if accelerator.is_main_process and not (tmp / "model.safetensors").exists():
                from safetensors.torch import save_file

                tensors = {k: v.detach().to("cpu").clone().contiguous() for k, v in full.items()}
                save_file(tensors, str(tmp / "model.safetensors"), {"format": "pt"})
        rank = accelerator.process_index
        try:
            _write_json(tmp / f"loader_state_rank{rank}.json", loader_state)
        except TypeError as err:
            raise TypeError(f"data loader state_dict() must be JSON-serialisable for checkpoints: {err}") from err
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            _maybe_inject_fault(step)
            state = dict(trainer_state, step=step, world_size=accelerator.num_processes, time=time.time())
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
        """Restore accelerate state from ``path``; return (trainer state, this rank's loader state).

        Raises:
            FileNotFoundError: ``path`` is not a complete checkpoint.
        """
        path = Path(path)
        if not is_complete(path):
            raise FileNotFoundError(f"not a complete checkpoint: {path}")
        accelerator.load_state(str(path))
        state = json.loads((path / STATE_FILE).read_text())
        saved_world = int(state.get("world_size", accelerator.num_processes))
        loader_file = path / f"loader_state_rank{accelerator.process_index}.json"
        loader_state = None
        if saved_world != accelerator.num_processes:
            logger.warning(
                "checkpoint %s was written by %d process(es), resuming with %d: the data stream restarts "
                "from its seed instead of the exact saved position", path, saved_world, accelerator.num_processes,
            )
        elif loader_file.is_file():
            loader_state = json.loads(loader_file.read_text())
        logger.info("resumed from %s at step %d", path, state["step"])
        return state, loader_state
