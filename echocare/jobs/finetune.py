"""The fine-tuning job on the shared :class:`~echocare.engine.trainer.Trainer`.

:func:`run_finetune` scans + splits the labeled data with the task's registry entry, builds backbone +
head, trains (accelerate, bf16, resume, logs as in pretraining), then on the main process evaluates the
validation split into ``RUN/metrics.json`` and saves ``RUN/model.safetensors`` (head + encoder + rebuild
metadata). :func:`prepare_data` (scan + split) is shared with the evaluate and protocol jobs.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from safetensors.torch import load_file

from echocare.config import ConfigError, config_to_dict
from echocare.config.finetune import FinetuneConfig
from echocare.data.labeled import EpochLoader, LabeledDataset, LabeledSet, ScanOptions, scan_dataset, steps_per_epoch
from echocare.data.splits import group_key, subsample_groups, train_val_split
from echocare.engine.trainer import Trainer
from echocare.errors import DataError
from echocare.jobs.preflight import check_model_name, check_resume
from echocare.metrics import flatten_metrics
from echocare.metrics.jsonsafe import dumps_strict
from echocare.tasks.finetune import (FinetuneTask, build_backbone, build_finetune_model, build_head,
                                     init_head_from_decoder, read_pretrained_decoder, save_finetuned)
from echocare.tasks.finetune.evaluation import collect_predictions, compute_metrics, evaluate_dataset, headline
from echocare.tasks.finetune.model import needs_backbone
from echocare.tasks.registry import get_task
from echocare.tasks.spec import MetricOptions, RunContext, TaskSpec

logger = logging.getLogger(__name__)

__all__ = ["PreparedData", "bind_task", "evaluate_and_save", "make_dataset", "metric_kwargs", "prepare_data",
           "resolve_budget", "run_finetune", "scan_options"]


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
                       num_classes=num_classes if num_classes is not None else d.num_classes,
                       positive_class=d.positive_class, clip_len=d.clip_len,
                       clip_stride=d.clip_stride, verify=d.verify, exclude=list(d.exclude))


def prepare_data(cfg: FinetuneConfig, scanned: LabeledSet | None = None) -> PreparedData:
    """Scan ``data.root`` (or reuse ``scanned``) and split it (group-aware; k-fold; ``data.val_root``)."""
    spec = get_task(cfg.task)
    d = cfg.data
    if d.positive_class is not None and spec.class_of is None:
        raise ConfigError(f"data.positive_class is for binary classification tasks; {spec.name} has no classes")
    full = scanned if scanned is not None else scan_dataset(spec.scan, d.root, scan_options(cfg), spec.name)
    groups = [group_key(r.path, d.group_regex, r.group) for r in full.records]
    labels = [spec.class_of(r) for r in full.records] if spec.class_of is not None else None  # stratify
    if d.val_root:
        val = scan_dataset(spec.scan, d.val_root, scan_options(cfg, full.class_names, full.num_outputs), spec.name)
        train_idx, val_idx = list(range(len(full.records))), list(range(len(val.records)))
    else:
        val = full
        train_idx, val_idx = train_val_split(groups, d.val_fraction, d.split_seed, d.fold, d.num_folds, labels)
    train_idx = subsample_groups(train_idx, groups, d.train_fraction, d.split_seed, labels)
    if not train_idx:
        raise DataError(f"{d.root}: the training split is empty; lower data.val_fraction or add data")
    return PreparedData(full, val, train_idx, val_idx, groups)


def make_dataset(spec: TaskSpec, cfg: FinetuneConfig, records: list, train: bool = False) -> LabeledDataset:
    """The task's dataset over ``records`` (training augmentation when ``train``)."""
    d = cfg.data
    kw: dict[str, Any] = dict(augment=d.augment, hflip=d.hflip, intensity=d.intensity, rotate=d.rotate,
                              scale=tuple(d.scale), translate=d.translate) if train else {}
    return LabeledDataset(records, spec.read, cfg.model.img_size, clip_len=d.clip_len, seed=cfg.train.seed,
                          hflip_safe=spec.hflip_safe, affine_safe=spec.affine_safe, name=spec.name, **kw)


def _head_args(spec: TaskSpec, cfg: FinetuneConfig, data: PreparedData) -> dict[str, Any]:
    targets = [data.train.records[i].target for i in data.train_idx]
    args = spec.head_args(data.train.num_outputs, data.train.temporal, targets)
    args.update(cfg.model.head)
    return args


def metric_kwargs(cfg: FinetuneConfig) -> dict[str, Any]:
    """Keyword arguments of :func:`~echocare.tasks.finetune.evaluation.compute_metrics` from ``eval.*``."""
    e = cfg.eval
    return dict(ci=e.ci, n_bootstrap=e.n_bootstrap, nsd_tolerance=e.nsd_tolerance, sdr_radii=tuple(e.sdr_radii),
                seed=cfg.data.split_seed, niqe_params=e.niqe_params, brisque_weights=e.brisque_weights,
                inception_weights=e.inception_weights, findings_terms=tuple(e.findings_terms),
                num_findings_terms=e.num_findings_terms, wordnet_dir=e.wordnet_dir, beam_size=e.beam_size,
                save_images=e.save_images)


def bind_task(spec: TaskSpec, cfg: FinetuneConfig, directory: Path, train_records: list | None = None,
              saved: dict[str, Any] | None = None, resume: bool = False) -> tuple[TaskSpec, dict[str, Any]]:
    """The task's per-run binding (:attr:`TaskSpec.bind`) from the config: fitting (``saved`` None) or
    rebuilding a saved model (``saved`` = its ``task_state``)."""
    ctx = RunContext(list(train_records or []), Path(directory), saved, dict(cfg.model.head), cfg.data.roi,
                     MetricOptions(**metric_kwargs(cfg)), resume)
    return spec.bound(ctx)


def evaluate_and_save(model: Any, spec: TaskSpec, cfg: FinetuneConfig, dataset: LabeledDataset, names: list[str],
                      device: Any, outputs_dir: Path | None) -> tuple[dict[str, Any], list[str]]:
    """Metrics of ``model`` on ``dataset`` and the task's human-readable outputs (written to ``outputs_dir``)."""
    pred = collect_predictions(model, dataset, spec, cfg.eval.batch_size, cfg.data.num_workers, device)
    report = compute_metrics(spec, pred, names, **metric_kwargs(cfg))
    files: list[str] = []
    if outputs_dir is not None and spec.save_outputs is not None:
        files = [str(f) for f in spec.save_outputs(pred, dataset.records, Path(outputs_dir))]
    return report, files


def write_json(path: Path, obj: Any) -> None:
    """Write ``obj`` as JSON atomically."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(dumps_strict(obj, indent=1, default=float))  # strict JSON: NaN -> null + reason in "nulls"
    tmp.replace(path)


def resolve_budget(cfg: FinetuneConfig, n_train: int, world_size: int) -> int:
    """Optimizer steps of the run from ``train.max_steps`` and/or ``train.epochs``.

    An epoch is ``steps_per_epoch(n_train, batch_size, world_size) // grad_accum`` optimizer steps (at
    least 1); ``epochs`` is rounded up to whole steps. Neither set: 1000 steps.

    Raises:
        ConfigError: both are set and disagree.
    """
    t = cfg.train
    if t.epochs is None:
        return t.max_steps if t.max_steps is not None else 1000
    per_epoch = max(1, steps_per_epoch(n_train, t.batch_size, world_size) // t.grad_accum)
    steps = max(1, math.ceil(t.epochs * per_epoch))
    if t.max_steps is not None and t.max_steps != steps:
        raise ConfigError(f"train.max_steps={t.max_steps} and train.epochs={t.epochs:g} (= {steps} steps of "
                          f"{per_epoch} per epoch) disagree; set one of them (the other to null)")
    return steps


def _sampling_weights(spec: TaskSpec, cfg: FinetuneConfig, records: list) -> list[float] | None:
    """Class-balanced item weights (``data.balanced``): 1 / (items of the item's class)."""
    if not cfg.data.balanced:
        return None
    if spec.class_of is None:
        raise ConfigError(f"data.balanced=true needs a task with classes; {spec.name} has none")
    labels = [spec.class_of(r) for r in records]
    counts = Counter(labels)
    logger.info("class-balanced sampling over %d classes (train counts %s)", len(counts), dict(sorted(counts.items())))
    return [1.0 / counts[y] for y in labels]


def _selection(spec: TaskSpec, cfg: FinetuneConfig) -> tuple[str, bool]:
    metric = cfg.eval.select_metric or spec.headline[0]
    return metric, metric in spec.lower_is_better


def _validator(spec: TaskSpec, cfg: FinetuneConfig, val_ds: LabeledDataset, names: list[str], device: Any,
               metric: str):
    """``evaluate(task)`` for the trainer: headline metrics (plus the selection metric), no bootstrap."""
    kw = dict(metric_kwargs(cfg), ci=False)

    def evaluate(task: FinetuneTask) -> dict[str, float]:
        report = evaluate_dataset(task.model, val_ds, spec, names, cfg.eval.batch_size, cfg.data.num_workers,
                                  device, **kw)
        flat = flatten_metrics(report)
        if metric not in flat:
            numeric = sorted(k for k, v in flat.items() if isinstance(v, (int, float)))
            if metric in spec.headline:  # a metric of the task that this data cannot give (null + reason)
                unavailable = report.get("unavailable") if isinstance(report.get("unavailable"), dict) else {}
                why = unavailable.get(metric, "null on this data")
                raise ConfigError(f"eval.select_metric={metric!r} is null here ({why}); choose from {numeric}")
            raise ConfigError(f"eval.select_metric={metric!r} is not a {spec.name} metric; choose from {numeric}")
        return {k: float(flat[k]) for k in (*spec.headline, metric) if isinstance(flat.get(k), (int, float))}

    return evaluate


def run_finetune(cfg: FinetuneConfig, output_dir: str | Path, resume: str | Path | None = None,
                 scanned: LabeledSet | None = None) -> dict[str, Any]:
    """Fine-tune according to ``cfg`` into ``output_dir``.

    With ``train.eval_every > 0`` the validation split is scored every N steps and ``model.safetensors``
    (and ``metrics.json``) hold the weights of the best ``eval.select_metric`` value (``best_step``);
    otherwise the final weights.

    Args:
        cfg: Validated fine-tuning config (not modified).
        output_dir: Run directory (config.yaml, metrics.jsonl, checkpoints/, metrics.json, model.safetensors,
            data_report.json, best.safetensors with periodic validation).
        resume: None, "auto" or a checkpoint path (see the trainer).
        scanned: A pre-scanned ``LabeledSet`` of ``data.root`` (protocol runs reuse one scan).

    Returns:
        The metrics.json content on the main process (``{}`` on other ranks); when a signal stopped the run
        (a checkpoint was written, nothing else) ``{"task", "step", "interrupted": True, "stop_signal"}`` on
        every rank.
    """
    spec = get_task(cfg.task)
    out = Path(output_dir)
    data = prepare_data(cfg, scanned)  # data errors surface before accelerate is initialised
    cfg = copy.deepcopy(cfg)
    cfg.train.max_steps = resolve_budget(cfg, len(data.train_idx), int(os.environ.get("WORLD_SIZE", "1")))
    m = cfg.model
    check_model_name(m.name)  # user errors before anything (a tokenizer, the Trainer) writes into the run dir
    check_resume(out, resume)
    train_records = [data.train.records[i] for i in data.train_idx]
    spec, task_state = bind_task(spec, cfg, out, train_records, resume=resume is not None)  # e.g. a tokenizer
    weights = _sampling_weights(spec, cfg, train_records)
    metric, lower = _selection(spec, cfg)
    if cfg.train.eval_every and not data.val_idx:
        raise ConfigError("train.eval_every > 0 needs a validation split (data.val_fraction > 0 or data.val_root)")
    head_args = _head_args(spec, cfg, data)
    use_backbone = needs_backbone(spec, head_args)  # False for heads that read the input directly (3D CNNs)

    def encoder():
        return build_backbone(m.init, m.name, m.img_size, m.patch_size, m.window_size, m.drop_path_rate,
                              m.embed_dim, m.depths, m.num_heads)

    # a weights file is read (and refused if it is a pickle, truncated, ...) before anything is written;
    # a random encoder is built after the Trainer has seeded every RNG
    backbone = encoder() if use_backbone and m.init != "random" else None
    decoder = read_pretrained_decoder(m.init) if m.head_init == "decoder" else None
    if decoder is not None:  # a decoder that does not fit the head is refused here, before anything is written
        if backbone is None:
            raise DataError(f"model.head_init=decoder: this {spec.name} head reads no image encoder, so it has no "
                            "pyramid decoder to start from a pretraining decoder")
        init_head_from_decoder(build_head(backbone, spec, head_args), decoder, m.init)
    trainer = Trainer(cfg.train, cfg.optim, out, config=cfg)
    train_ds = make_dataset(spec, cfg, train_records, train=True)
    val_ds = make_dataset(spec, cfg, [data.val.records[i] for i in data.val_idx])
    if trainer.is_main:
        write_json(out / "data_report.json", data.report())
    if use_backbone and backbone is None:
        backbone = encoder()
    elif not use_backbone and m.init != "random":
        logger.warning("model.init=%s is not used: the %s head has no image encoder", m.init, spec.name)
    model = build_finetune_model(backbone, spec, head_args, m.feature_norm, m.linear_probe)
    if decoder is not None:
        init_head_from_decoder(model.head, decoder, m.init)
    task = FinetuneTask(model, 1.0 if m.linear_probe else m.layer_decay)
    loader = EpochLoader(train_ds, cfg.train.batch_size, shuffle=True, seed=cfg.train.seed, rank=trainer.rank,
                         world_size=trainer.world_size, num_workers=cfg.data.num_workers, weights=weights)
    logger.info("fine-tuning %s: %d train / %d val items, %d outputs, init %s%s, %d steps", spec.name,
                len(train_ds), len(val_ds), data.train.num_outputs, m.init,
                " (linear probe)" if m.linear_probe else "", cfg.train.max_steps)
    names = data.train.class_names
    evaluate = _validator(spec, cfg, val_ds, names, trainer.device, metric) if cfg.train.eval_every else None
    result = trainer.fit(task, loader, resume=resume, evaluate=evaluate, eval_every=cfg.train.eval_every,
                         select_metric=metric if evaluate else None, lower_is_better=lower)
    if result.interrupted:  # stopped by a signal: checkpointed; metrics.json and model.safetensors come on resume
        logger.warning("fine-tuning stopped by signal %s at step %d; resume with --resume auto", result.stop_signal,
                       result.step)
        return {"task": spec.name, "step": result.step, "interrupted": True, "stop_signal": result.stop_signal}
    summary: dict[str, Any] = {}
    if trainer.is_main:
        summary = {"task": spec.name, "step": result.step, "interrupted": result.interrupted,
                   "split": "val", "n_train": len(train_ds), "n_items": len(val_ds)}
        if result.best_weights is not None:
            task.load_state_dict(load_file(str(result.best_weights)))
            summary.update(best_step=result.best_step, selected_on=metric, best_value=result.best_value)
            logger.info("model.safetensors: best %s=%.6g at step %d", metric, result.best_value, result.best_step)
        meta = {"task": spec.name, "head_args": head_args, "class_names": names, "feature_norm": m.feature_norm,
                "config": config_to_dict(cfg), "step": result.best_step or result.step, "task_state": task_state}
        save_finetuned(model, out / "model.safetensors", meta)
        if len(val_ds):
            report, files = evaluate_and_save(model, spec, cfg, val_ds, names, trainer.device, out)
            summary.update(metrics=report, headline=headline(spec, report))
            if files:
                summary["outputs"] = [str(Path(f).relative_to(out)) for f in files]
            logger.info("validation %s", json.dumps(summary["headline"]))
        else:
            logger.warning("no validation items (data.val_fraction=0 and no data.val_root): metrics.json has none")
            summary.update(metrics={}, headline={})
        write_json(out / "metrics.json", summary)
    trainer.accelerator.wait_for_everyone()
    return summary
