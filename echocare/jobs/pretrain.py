"""Assemble and run a pretraining job from a :class:`~echocare.config.PretrainConfig`.

``run_pretraining(cfg, output_dir, resume)`` is what ``echocare pretrain`` and
``echocare quickstart`` call; it works unchanged under ``accelerate launch``.
Order matters: the :class:`Trainer` (and with it the process group) is created
first, then the ontology, model and data stream, so that webdataset splits the
shards by rank and every rank builds the same initial weights from
``train.seed``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

from echocare.config import ConfigError, PretrainConfig
from echocare.data.loader import PretrainStream, make_pretrain_loader
from echocare.data.shardlist import expand_shards, locate_index
from echocare.engine.trainer import FitResult, Trainer
from echocare.jobs.preflight import check_model_name, check_resume
from echocare.models import create_model
from echocare.ontology import Ontology, load_ontology
from echocare.tasks.pretrain import PretrainTask

logger = logging.getLogger(__name__)


def _dataset_weights(spec: str | None):
    if spec is None or not spec.strip().startswith("{"):
        return spec
    try:
        weights = json.loads(spec)
    except json.JSONDecodeError as err:
        raise ConfigError(f"data.dataset_weights: invalid JSON mapping {spec!r}: {err}") from err
    if not isinstance(weights, dict):
        raise ConfigError(f"data.dataset_weights: expected a JSON mapping, got {spec!r}")
    return weights


def resolve_hie_weight(cfg: PretrainConfig, index: dict | None) -> tuple[PretrainConfig, str | None]:
    """Turn L_HIE off when the shard index lists fewer than ``model.hie_min_labels`` distinct label paths.

    With one label path every labeled image has the same target at every level of the hierarchy, so the
    classifier only learns a constant and the encoder gets nothing from it (on HC18 it cost the low-label
    fine-tune ~0.9 mm: docs/results.md, table 12).

    Args:
        cfg: The validated config.
        index: The shards' merged ``index.json`` (None, or no ``labels`` counts in it: L_HIE is kept).

    Returns:
        ``(cfg, reason)``: the config to run (``model.hie_weight`` 0 when turned off) and why it was turned
        off (None when it was not).
    """
    m = cfg.model
    if m.hie_weight == 0 or index is None or not isinstance(index.get("labels"), dict):
        return cfg, None
    labels = {path: int(n) for path, n in index["labels"].items() if int(n) > 0}
    if not labels or len(labels) >= m.hie_min_labels:  # (no label counts: hand-written index, nothing known)
        return cfg, None
    found = ", ".join(f"{path} ({n} images)" for path, n in sorted(labels.items())[:5])
    found += ", ..." if len(labels) > 5 else ""
    reason = (f"L_HIE is off for this run (model.hie_weight {m.hie_weight:g} -> 0): the shards' index lists "
              f"{len(labels)} distinct label path(s) [{found}], fewer than model.hie_min_labels={m.hie_min_labels}, "
              f"so every labeled image would have the same target. Set model.hie_min_labels=1 to train it anyway.")
    return dataclasses.replace(cfg, model=dataclasses.replace(m, hie_weight=0.0)), reason


def build_pretrain_task(cfg: PretrainConfig) -> tuple[PretrainTask, Ontology | None]:
    """Build the ontology (or None when ``model.hie_weight == 0``) and the wrapped pretraining model.

    Returns:
        ``(task, ontology)``.
    """
    m = cfg.model
    onto = load_ontology(m.ontology) if m.hie_weight > 0 else None
    model = create_model(
        m.name, ontology=onto, in_chans=m.in_chans, img_size=m.img_size, patch_size=m.patch_size,
        window_size=m.window_size, decoder=m.decoder, decoder_dim=m.decoder_dim,
        decoder_output=m.decoder_output,
        target_norm_patch=m.target_norm_patch, weight_init=m.weight_init, hie_weight=m.hie_weight,
        drop_path_rate=m.drop_path_rate,
        embed_dim=m.embed_dim, depths=m.depths, num_heads=m.num_heads,
    )
    n_params = sum(p.numel() for p in model.parameters())
    logger.info("model %s: %.2fM parameters, ontology %s", m.name, n_params / 1e6,
                f"{len(onto)} nodes" if onto is not None else "none (MIM only)")
    return PretrainTask(model), onto


def build_pretrain_loader(cfg: PretrainConfig, ontology: Ontology | None, rank: int, world_size: int,
                          index: dict | None = None):
    """The resumable pretraining loader of this process (see :mod:`echocare.data.loader`); ``index``: the
    shards' already located ``index.json`` (None: the stream locates it)."""
    d, m = cfg.data, cfg.model
    stream = PretrainStream(
        d.shards, ontology=ontology, img_size=m.img_size, patch_size=m.patch_size,
        mask_patch_size=d.mask_patch_size, mask_ratio=d.mask_ratio, augment=d.augment, seed=cfg.train.seed,
        shuffle_buffer=d.shuffle_buffer, resampled=d.resampled, epoch_length=d.epoch_length,
        dataset_weights=_dataset_weights(d.dataset_weights), rank=rank, world_size=world_size,
        verify=d.verify, fit=d.fit, crop_p=d.crop_p, crop_scale=tuple(d.crop_scale), index=index,
    )
    return make_pretrain_loader(stream, cfg.train.batch_size, num_workers=d.num_workers, drop_last=True)


def run_pretraining(cfg: PretrainConfig, output_dir: str | Path, resume: str | Path | None = None) -> FitResult:
    """Pretrain according to ``cfg``, writing the run to ``output_dir``.

    Args:
        cfg: Validated pretraining config.
        output_dir: Run directory (config.yaml, metrics.jsonl, checkpoints/, PNGs).
        resume: None, "auto" (newest complete checkpoint in ``output_dir``) or a checkpoint path.

    Returns:
        The trainer's :class:`FitResult`.
    """
    check_model_name(cfg.model.name)  # user errors before the Trainer creates the run directory
    urls = expand_shards(cfg.data.shards)  # a missing or empty shard directory: one error, nothing written
    check_resume(output_dir, resume)
    index = locate_index(cfg.data.shards, urls, None)  # read once: the L_HIE decision and the stream share it
    cfg, hie_off = resolve_hie_weight(cfg, index)
    trainer = Trainer(cfg.train, cfg.optim, output_dir, config=cfg)  # (writes the config that runs)
    if hie_off and trainer.is_main:
        logger.warning(hie_off)
    task, onto = build_pretrain_task(cfg)
    loader = build_pretrain_loader(cfg, onto, trainer.rank, trainer.world_size, index=index)
    result = trainer.fit(task, loader, resume=resume)
    stats = loader.stats
    if stats.get("skipped"):
        logger.warning("data: %d corrupt/invalid sample(s) skipped on rank %d: %s", stats["skipped"],
                       trainer.rank, stats.get("skipped_by_reason"))
    if trainer.is_main:
        summary = {"step": result.step, "interrupted": result.interrupted,
                   "nonfinite_skipped": result.nonfinite_skipped, "data": stats,
                   "last_checkpoint": str(result.last_checkpoint) if result.last_checkpoint else None,
                   "model": cfg.model.name}
        (Path(output_dir) / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    return result
