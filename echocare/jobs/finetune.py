"""The fine-tuning job on the shared :class:`~echocare.engine.trainer.Trainer`.

:func:`run_finetune` scans + splits the labeled data with the task's registry entry, builds backbone +
head, trains (accelerate, bf16, resume, logs as in pretraining), then on the main process evaluates the
validation split into ``RUN/metrics.json`` and saves ``RUN/model.safetensors`` (head + encoder + rebuild
metadata). :func:`prepare_data` (scan + split) is shared with the evaluate and protocol jobs.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from echocare.config import config_to_dict
from echocare.config.finetune import FinetuneConfig
from echocare.data.labeled import EpochLoader, LabeledDataset, LabeledSet, ScanOptions, scan_dataset
from echocare.data.splits import group_key, subsample_groups, train_val_split
from echocare.engine.trainer import Trainer
from echocare.tasks.finetune import FinetuneTask, build_backbone, build_finetune_model, save_finetuned
from echocare.tasks.finetune.evaluation import evaluate_dataset, headline
from echocare.tasks.registry import get_task
from echocare.tasks.spec import TaskSpec

logger = logging.getLogger(__name__)

__all__ = ["PreparedData", "make_dataset", "metric_kwargs", "prepare_data", "run_finetune", "scan_options"]


@dataclass
class PreparedData:
    """Scanned dataset(s) and the split of one run."""

    train: LabeledSet
    val: LabeledSet  # the same object as train when split from one root
    train_idx: list[int]
    val_idx: list[int]
    groups: list[str]

    def report(self) -> dict[str, Any]:
        """Split sizes, group counts and skipped inputs (``RUN/data_report.json``)."""
        val_groups = len({self.groups[i] for i in self.val_idx}) if self.val is self.train else None
        rep = {"task": self.train.task, "root": str(self.train.root), "class_names": self.train.class_names,
               "n_train": len(self.train_idx), "n_val": len(self.val_idx),
               "train_groups": len({self.groups[i] for i in self.train_idx}), "val_groups": val_groups,
               "skipped": self.train.skips.to_dict()}
        if self.val is not self.train:
            rep["val_root"] = str(self.val.root)
            rep["val_skipped"] = self.val.skips.to_dict()
        return rep


def scan_options(cfg: FinetuneConfig, classes: list[str] | None = None,
                 num_classes: int | None = None) -> ScanOptions:
    """The ``data.*`` format options; ``classes`` / ``num_classes`` pin the output space (a validation
    root or new data must match the model's; scanners that have no such notion ignore them)."""
    d = cfg.data
    return ScanOptions(csv=d.csv, annotations=d.annotations, images_dir=d.images_dir, masks_dir=d.masks_dir,
                       path_column=d.path_column, label_column=d.label_column, group_column=d.group_column,
                       value_columns=list(d.value_columns), classes=list(classes if classes is not None else d.classes),
                       num_classes=num_classes if num_classes is not None else d.num_classes, clip_len=d.clip_len,
                       clip_stride=d.clip_stride, verify=d.verify)


def prepare_data(cfg: FinetuneConfig, scanned: LabeledSet | None = None) -> PreparedData:
    """Scan ``data.root`` (or reuse ``scanned``) and split it (group-aware; k-fold; ``data.val_root``)."""
    spec = get_task(cfg.task)
    d = cfg.data
    full = scanned if scanned is not None else scan_dataset(spec.scan, d.root, scan_options(cfg), spec.name)
    groups = [group_key(r.path, d.group_regex, r.group) for r in full.records]
    if d.val_root:
        val = scan_dataset(spec.scan, d.val_root, scan_options(cfg, full.class_names, full.num_outputs), spec.name)
        train_idx, val_idx = list(range(len(full.records))), list(range(len(val.records)))
    else:
        val = full
        train_idx, val_idx = train_val_split(groups, d.val_fraction, d.split_seed, d.fold, d.num_folds)
    train_idx = subsample_groups(train_idx, groups, d.train_fraction, d.split_seed)
    if not train_idx:
        raise ValueError(f"{d.root}: the training split is empty; lower data.val_fraction or add data")
    return PreparedData(full, val, train_idx, val_idx, groups)


def make_dataset(spec: TaskSpec, cfg: FinetuneConfig, records: list, train: bool = False) -> LabeledDataset:
    """The task's dataset over ``records`` (training augmentation when ``train``)."""
    d = cfg.data
    kw: dict[str, Any] = dict(augment=d.augment, hflip=d.hflip, intensity=d.intensity) if train else {}
    return LabeledDataset(records, spec.read, cfg.model.img_size, clip_len=d.clip_len, seed=cfg.train.seed,
                          hflip_safe=spec.hflip_safe, name=spec.name, **kw)


def _head_args(spec: TaskSpec, cfg: FinetuneConfig, data: PreparedData) -> dict[str, Any]:
    targets = [data.train.records[i].target for i in data.train_idx]
    args = spec.head_args(data.train.num_outputs, data.train.temporal, targets)
    args.update(cfg.model.head)
    return args


def metric_kwargs(cfg: FinetuneConfig) -> dict[str, Any]:
    """Keyword arguments of :func:`~echocare.tasks.finetune.evaluation.compute_metrics` from ``eval.*``."""
    e = cfg.eval
    return dict(ci=e.ci, n_bootstrap=e.n_bootstrap, nsd_tolerance=e.nsd_tolerance, sdr_radii=tuple(e.sdr_radii),
                seed=cfg.data.split_seed)


def write_json(path: Path, obj: Any) -> None:
    """Write ``obj`` as JSON atomically."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(obj, indent=1, default=float))
    tmp.replace(path)


def run_finetune(cfg: FinetuneConfig, output_dir: str | Path, resume: str | Path | None = None,
                 scanned: Any = None) -> dict[str, Any]:
    """Fine-tune according to ``cfg`` into ``output_dir``.

    Args:
        cfg: Validated fine-tuning config.
        output_dir: Run directory (config.yaml, metrics.jsonl, checkpoints/, metrics.json, model.safetensors,
            data_report.json).
        resume: None, "auto" or a checkpoint path (see the trainer).
        scanned: A pre-scanned ``LabeledSet`` of ``data.root`` (protocol runs reuse one scan).

    Returns:
        The metrics.json content on the main process (``{}`` on other ranks).
    """
    spec = get_task(cfg.task)
    out = Path(output_dir)
    data = prepare_data(cfg, scanned)  # data errors surface before accelerate is initialised
    trainer = Trainer(cfg.train, cfg.optim, out, config=cfg)
    train_ds = make_dataset(spec, cfg, [data.train.records[i] for i in data.train_idx], train=True)
    val_ds = make_dataset(spec, cfg, [data.val.records[i] for i in data.val_idx])
    if trainer.is_main:
        write_json(out / "data_report.json", data.report())
    m = cfg.model
    backbone = build_backbone(m.init, m.name, m.img_size, m.patch_size, m.window_size, m.drop_path_rate)
    head_args = _head_args(spec, cfg, data)
    model = build_finetune_model(backbone, spec, head_args, m.feature_norm, m.linear_probe)
    task = FinetuneTask(model, 1.0 if m.linear_probe else m.layer_decay)
    loader = EpochLoader(train_ds, cfg.train.batch_size, shuffle=True, seed=cfg.train.seed, rank=trainer.rank,
                         world_size=trainer.world_size, num_workers=cfg.data.num_workers)
    logger.info("fine-tuning %s: %d train / %d val items, %d outputs, init %s%s", cfg.task, len(train_ds),
                len(val_ds), data.train.num_outputs, m.init, " (linear probe)" if m.linear_probe else "")
    result = trainer.fit(task, loader, resume=resume)
    summary: dict[str, Any] = {}
    if trainer.is_main:
        meta = {"task": cfg.task, "head_args": head_args, "class_names": data.train.class_names,
                "feature_norm": m.feature_norm, "config": config_to_dict(cfg), "step": result.step}
        save_finetuned(model, out / "model.safetensors", meta)
        summary = {"task": cfg.task, "step": result.step, "interrupted": result.interrupted,
                   "split": "val", "n_train": len(train_ds), "n_items": len(val_ds)}
        if len(val_ds):
            report = evaluate_dataset(model, val_ds, spec, data.train.class_names, cfg.eval.batch_size,
                                      cfg.data.num_workers, trainer.device, **metric_kwargs(cfg))
            summary.update(metrics=report, headline=headline(spec, report))
            logger.info("validation %s", json.dumps(summary["headline"]))
        else:
            logger.warning("no validation items (data.val_fraction=0 and no data.val_root): metrics.json has none")
            summary.update(metrics={}, headline={})
        write_json(out / "metrics.json", summary)
    trainer.accelerator.wait_for_everyone()
    return summary


