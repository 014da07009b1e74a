"""The quickstart job: phantom shards -> a few minutes of CPU pretraining of the debug model -> export.

Writes ``OUT/phantom`` (shards), ``OUT/run`` (config.yaml, metrics.jsonl, checkpoints, PNGs) and
``OUT/encoder.safetensors``. Rerunning reuses the shards and resumes the run.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from echocare.config import PretrainConfig
from echocare.data.phantom import write_phantom_shards
from echocare.engine.trainer import FitResult
from echocare.jobs.export import export_encoder
from echocare.jobs.pretrain import run_pretraining

logger = logging.getLogger(__name__)

__all__ = ["QuickstartResult", "quickstart_overrides", "run_quickstart"]


@dataclass
class QuickstartResult:
    """Where the quickstart put things.

    Attributes:
        fit: The pretraining outcome.
        run_dir: The pretraining run directory.
        weights: The exported encoder (None when the run was interrupted).
        shards_built: Whether the phantom shards were (re)written in this call.
    """

    fit: FitResult
    run_dir: Path
    weights: Path | None
    shards_built: bool


def quickstart_overrides(shards: Path, steps: int) -> list[str]:
    """Config overrides of the quickstart on top of the debug recipe."""
    return [
        f"data.shards={shards}", f"train.max_steps={steps}", "train.ckpt_every=100",
        "train.image_every=100", "train.log_every=10", "optim.warmup_steps=20",
        "data.shuffle_buffer=256", "model.hie_weight=0.5",
        # the multi-scale decoder learns visible structure within a few hundred steps; the linear
        # SimMIM head of the 24-channel debug encoder only reaches the mean image in that time
        "model.decoder=progressive",
    ]


def run_quickstart(cfg: PretrainConfig, output_dir: str | Path, images: int,
                   announce: Callable[[str], None] = logger.info) -> QuickstartResult:
    """Build phantom shards (unless already there), pretrain per ``cfg`` in ``OUT/run``, export the encoder.

    Args:
        cfg: Pretraining config whose ``data.shards`` is ``OUT/phantom``.
        output_dir: Output folder.
        images: Phantom images to generate.
        announce: Called with a one-line message at each stage (the CLI prints them).
    """
    out = Path(output_dir)
    shards = out / "phantom"
    index_file = shards / "index.json"
    built = not (index_file.is_file() and json.loads(index_file.read_text()).get("total") == images)
    if built:
        announce(f"[1/3] writing {images} phantom ultrasound images to {shards} ...")
        write_phantom_shards(shards, images, seed=cfg.train.seed, image_size=cfg.model.img_size,
                             shard_max_count=max(1, images // 4))
    else:
        announce(f"[1/3] phantom shards already in {shards}")
    run_dir = out / "run"
    announce(f"[2/3] pretraining {cfg.model.name} for {cfg.train.max_steps} steps on {cfg.model.img_size}px images ...")
    fit = run_pretraining(cfg, run_dir, resume="auto")
    if fit.interrupted:
        return QuickstartResult(fit, run_dir, None, built)
    announce("[3/3] exporting the encoder ...")
    weights = export_encoder(run_dir, out / "encoder.safetensors")
    return QuickstartResult(fit, run_dir, weights, built)
