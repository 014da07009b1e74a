"""Image enhancement (seed 003 §4.5.6): ``ROOT/low`` → ``ROOT/high``, paired where names match, else unpaired.

The model is the echocare encoder + :class:`~echocare.models.heads.enhancement.EnhancementHead`
(residual decoder + PatchGAN discriminator, EnlightenGAN-style unpaired losses, L1 + SSIM on pairs).
Metrics: NIQE, BRISQUE, PIQE, FID over all enhanced images, PSNR / SSIM (and the identity baseline
``psnr_input`` / ``ssim_input``) over the paired ones; a metric whose parameters are not given is null
with its reason (``eval.niqe_params``, ``eval.brisque_weights``, ``eval.inception_weights``). The
enhanced images are written as PNG grids (input | output).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from echocare.data.labeled.enhancement import read_enhancement, scan_enhancement_records
from echocare.data.labeled.records import Record
from echocare.metrics.enhancement import enhancement_report, psnr, ssim
from echocare.tasks.spec import MetricOptions, RunContext, TaskSpec, require_modules

logger = logging.getLogger(__name__)

ROWS_PER_GRID = 8


def head_args(num_outputs: int, temporal: bool, targets: list) -> dict[str, Any]:
    """A one-channel generator (``model.head`` adds e.g. ``feature_size``, ``adv_weight``)."""
    return {"in_chans": 1}


def collect(pred: dict[str, torch.Tensor], batch: dict[str, Any], records: list[Record],
            out: dict[str, list]) -> None:
    """Enhanced, input and high-quality images (B, 1, S, S), paired flags and the high images' paths."""
    out.setdefault("enhanced", []).append(pred["enhanced"].float().cpu())
    out.setdefault("input", []).append(batch["image"].float().cpu().clamp(0.0, 1.0))
    out.setdefault("high", []).append(batch["high"].float().cpu())
    out.setdefault("paired", []).extend(bool(p) for p in batch["paired"].cpu().reshape(-1))
    out.setdefault("high_path", []).extend(batch["high_path"])
    out.setdefault("path", []).extend(r.path for r in records)


def metrics(pred: dict[str, list], class_names: list[str], opts: MetricOptions) -> dict[str, Any]:
    """Blind metrics of every enhanced image; PSNR/SSIM of the paired ones (null + reason when none)."""
    enhanced, inputs, high = torch.cat(pred["enhanced"]), torch.cat(pred["input"]), torch.cat(pred["high"])
    paired = torch.tensor(pred["paired"], dtype=torch.bool)
    first: dict[str, int] = {}
    for i, p in enumerate(pred["high_path"]):
        first.setdefault(p, i)
    reference = high[sorted(first.values())]  # each distinct high-quality image once
    report = enhancement_report(enhanced, reference=reference, niqe_params=opts.niqe_params,
                                brisque_weights=opts.brisque_weights, inception_weights=opts.inception_weights)
    report["num_paired"] = int(paired.sum())
    report["num_reference"] = int(reference.shape[0])
    if paired.any():
        e, h, x = enhanced[paired], high[paired], inputs[paired]
        report.update(psnr=psnr(e, h), ssim=ssim(e, h), psnr_input=psnr(x, h), ssim_input=ssim(x, h))
        for k in ("psnr", "ssim"):
            report["unavailable"].pop(k, None)
    return report


def _to_uint8(img: torch.Tensor) -> np.ndarray:
    return (img[0].clamp(0.0, 1.0).numpy() * 255.0).round().astype(np.uint8)  # (S, S)


def save_grids(collected: dict[str, list], records: list[Record], directory: Path, limit: int = 64) -> list[Path]:
    """PNG grids of ``ROWS_PER_GRID`` rows (input | output) of the first ``limit`` items, plus ``grids.json``
    naming each row's low-quality file; written to ``directory/enhanced/``."""
    if limit <= 0 or not collected.get("enhanced"):
        return []
    enhanced, inputs = torch.cat(collected["enhanced"])[:limit], torch.cat(collected["input"])[:limit]
    folder = Path(directory) / "enhanced"
    folder.mkdir(parents=True, exist_ok=True)
    written, index = [], {}
    for g, start in enumerate(range(0, enhanced.shape[0], ROWS_PER_GRID)):
        rows = [np.concatenate([_to_uint8(inputs[i]), _to_uint8(enhanced[i])], axis=1)  # (S, 2S)
                for i in range(start, min(start + ROWS_PER_GRID, enhanced.shape[0]))]
        path = folder / f"grid_{g:03d}.png"
        Image.fromarray(np.concatenate(rows, axis=0)).save(path)
        written.append(path)
        index[path.name] = collected["path"][start : start + len(rows)]
    (folder / "grids.json").write_text(json.dumps({"columns": ["input", "output"], "rows": index}, indent=1))
    logger.info("wrote %d enhanced-image grids to %s", len(written), folder)
    return [*written, folder / "grids.json"]


def bind(spec: TaskSpec, ctx: RunContext) -> tuple[TaskSpec, dict[str, Any]]:
    """Check the metric libraries are installed; bind ``eval.save_images`` into the grid writer; no state."""
    require_modules(spec.name, ("pyiqa", "torchmetrics", "scipy"), "enhancement")
    return dataclasses.replace(spec, save_outputs=functools.partial(save_grids, limit=ctx.options.save_images)), {}


SPEC = TaskSpec(
    name="enhancement", head="enhancement", head_args=head_args, scan=scan_enhancement_records,
    read=read_enhancement, collect=collect, metrics=metrics,
    headline=("psnr", "ssim", "niqe", "piqe", "brisque", "fid"),
    lower_is_better=frozenset({"niqe", "piqe", "brisque", "fid"}), hflip_safe=False,
    description="image enhancement (ROOT/low, ROOT/high; paired by name, else unpaired)",
    bind=bind, save_outputs=save_grids,
)
