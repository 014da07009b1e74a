"""Fine-tuning, evaluation and protocol runs on the shared :class:`~echocare.engine.trainer.Trainer`.

* :func:`run_finetune` — scan + split the labeled data, build backbone + head, train (accelerate,
  bf16, resume, logs as in pretraining), then on the main process evaluate the validation split
  into ``RUN/metrics.json`` and save ``RUN/model.safetensors`` (head + encoder + rebuild metadata).
* :func:`evaluate_checkpoint` — rebuild a saved model and recompute its metrics on its own
  validation split (reproducing ``metrics.json``) or on any dataset in the same format.
* :func:`run_protocol` — label-efficiency fractions x repeated seeds; mean ± std table (markdown,
  CSV, JSON) and plot (PNG) via :mod:`echocare.metrics.summary`.
"""

from __future__ import annotations

import copy
import csv
import json
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from echocare.config import config_to_dict, config_to_yaml, load_config
from echocare.config.finetune import FinetuneConfig
from echocare.engine.trainer import Trainer

logger = logging.getLogger(__name__)

__all__ = ["PreparedData", "evaluate_checkpoint", "prepare_data", "run_finetune", "run_protocol"]


@dataclass
class PreparedData:
    """Scanned dataset(s) and the split of one run."""

    train: Any  # LabeledSet
    val: Any  # LabeledSet (same object as train when split from one root)
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


def _scan_options(cfg: FinetuneConfig, classes: list[str] | None = None, num_classes: int | None = None):
    from echocare.data.labeled import ScanOptions

    d = cfg.data
    return ScanOptions(csv=d.csv, annotations=d.annotations, images_dir=d.images_dir, masks_dir=d.masks_dir,
                       path_column=d.path_column, label_column=d.label_column, group_column=d.group_column,
                       value_columns=list(d.value_columns), classes=list(classes if classes is not None else d.classes),
                       num_classes=num_classes if num_classes is not None else d.num_classes, clip_len=d.clip_len,
                       clip_stride=d.clip_stride, verify=d.verify)


def prepare_data(cfg: FinetuneConfig, scanned: Any = None) -> PreparedData:
    """Scan ``data.root`` (or reuse ``scanned``) and split it (group-aware; k-fold; ``data.val_root``)."""
    from echocare.data.labeled import scan_dataset
    from echocare.data.splits import group_key, subsample_groups, train_val_split

    d = cfg.data
    full = scanned if scanned is not None else scan_dataset(cfg.task, d.root, _scan_options(cfg))
    groups = [group_key(r.path, d.group_regex, r.group) for r in full.records]
    if d.val_root:
        val = scan_dataset(cfg.task, d.val_root, _scan_options(cfg, full.class_names, full.num_outputs
                                                               if cfg.task == "segmentation" else None))
        train_idx, val_idx = list(range(len(full.records))), list(range(len(val.records)))
    else:
        val = full
        train_idx, val_idx = train_val_split(groups, d.val_fraction, d.split_seed, d.fold, d.num_folds)
    train_idx = subsample_groups(train_idx, groups, d.train_fraction, d.split_seed)
    if not train_idx:
        raise ValueError(f"{d.root}: the training split is empty; lower data.val_fraction or add data")
    return PreparedData(full, val, train_idx, val_idx, groups)


def _datasets(cfg: FinetuneConfig, data: PreparedData):
    from echocare.data.labeled import LabeledDataset

    d = cfg.data
    kw = dict(task=cfg.task, img_size=cfg.model.img_size, clip_len=d.clip_len)
    train = LabeledDataset([data.train.records[i] for i in data.train_idx], augment=d.augment, hflip=d.hflip,
                           intensity=d.intensity, seed=cfg.train.seed, **kw)
    val = LabeledDataset([data.val.records[i] for i in data.val_idx], augment=False, **kw)
    return train, val


def _head_args(cfg: FinetuneConfig, data: PreparedData) -> dict[str, Any]:
    from echocare.tasks.finetune import head_arguments

    extra = dict(cfg.model.head)
    if cfg.task == "regression" and "target_mean" not in extra:  # standardise targets with train statistics
        y = np.asarray([data.train.records[i].target for i in data.train_idx], dtype=float)
        extra["target_mean"] = float(y.mean())
        extra["target_std"] = float(max(y.std(), 1e-6))
    return head_arguments(cfg.task, data.train.num_outputs, data.train.temporal, extra)


def _metric_kwargs(cfg: FinetuneConfig) -> dict[str, Any]:
    e = cfg.eval
    return dict(ci=e.ci, n_bootstrap=e.n_bootstrap, nsd_tolerance=e.nsd_tolerance, sdr_radii=tuple(e.sdr_radii),
                seed=cfg.data.split_seed)


def _write_json(path: Path, obj: Any) -> None:
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
    from echocare.data.labeled import EpochLoader
    from echocare.tasks.finetune import FinetuneTask, build_backbone, build_finetune_model, save_finetuned
    from echocare.tasks.finetune_eval import evaluate_dataset, headline

    out = Path(output_dir)
    data = prepare_data(cfg, scanned)  # data errors surface before accelerate is initialised
    trainer = Trainer(cfg.train, cfg.optim, out, config=cfg)
    train_ds, val_ds = _datasets(cfg, data)
    if trainer.is_main:
        _write_json(out / "data_report.json", data.report())
    m = cfg.model
    backbone = build_backbone(m.init, m.name, m.img_size, m.patch_size, m.window_size, m.drop_path_rate,
                              m.embed_dim, m.depths, m.num_heads)
    head_args = _head_args(cfg, data)
    model = build_finetune_model(backbone, cfg.task, head_args, m.feature_norm, m.linear_probe)
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
            report = evaluate_dataset(model, val_ds, data.train.class_names, cfg.eval.batch_size,
                                      cfg.data.num_workers, trainer.device, **_metric_kwargs(cfg))
            summary.update(metrics=report, headline=headline(cfg.task, report))
            logger.info("validation %s", json.dumps(summary["headline"]))
        else:
            logger.warning("no validation items (data.val_fraction=0 and no data.val_root): metrics.json has none")
            summary.update(metrics={}, headline={})
        _write_json(out / "metrics.json", summary)
    trainer.accelerator.wait_for_everyone()
    return summary


def evaluate_checkpoint(checkpoint: str | Path, data: str | None = None, overrides: Sequence[str] = (),
                        out: str | Path | None = None, device: str = "cpu") -> dict[str, Any]:
    """Recompute a fine-tuned model's metrics.

    Args:
        checkpoint: A fine-tune run directory or its ``model.safetensors``.
        data: Dataset root in the training format; None = the run's own validation split (this
            reproduces ``metrics.json``). With a root, every item of it is evaluated.
        overrides: ``key=value`` config overrides (e.g. ``data.csv=test.csv``, ``eval.batch_size=64``).
        out: Where to write the metrics JSON (None: not written).
        device: Torch device.

    Returns:
        The metrics document (same layout as ``metrics.json``).
    """
    from echocare.data.labeled import LabeledDataset, scan_dataset
    from echocare.tasks.finetune import load_finetuned
    from echocare.tasks.finetune_eval import evaluate_dataset, headline

    path = Path(checkpoint)
    if path.is_dir():
        path = path / "model.safetensors"
    if not path.is_file():
        raise FileNotFoundError(f"no fine-tuned model at {path} (expected RUN_DIR/model.safetensors)")
    model, meta = load_finetuned(path)
    model.to(device)
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "config.yaml"
        base.write_text(config_to_yaml(_config_of(meta)))
        extra = [f"data.root={data}", "data.val_root=null"] if data else []
        cfg = load_config(FinetuneConfig, base, [*extra, *overrides])
    names = list(meta["class_names"])
    if data:
        num = len(names) if cfg.task == "segmentation" else None
        keep_names = cfg.task in ("classification", "video", "segmentation")
        scanned = scan_dataset(cfg.task, data, _scan_options(cfg, names if keep_names else [], num))
        if cfg.task in ("detection", "landmarks", "regression") and scanned.num_outputs != len(names):
            raise ValueError(f"{data}: {scanned.num_outputs} {cfg.task} outputs ({scanned.class_names}) but the model "
                             f"was trained for {len(names)} ({names})")
        if cfg.task == "detection" and scanned.class_names != names:
            raise ValueError(f"{data}: COCO categories {scanned.class_names} differ from the model's {names}")
        records, split = scanned.records, "all"
    else:
        prepared = prepare_data(cfg)
        records, split = [prepared.val.records[i] for i in prepared.val_idx], "val"
    ds = LabeledDataset(records, cfg.task, cfg.model.img_size, augment=False, clip_len=cfg.data.clip_len)
    report = evaluate_dataset(model, ds, names, cfg.eval.batch_size, cfg.data.num_workers, device,
                              **_metric_kwargs(cfg))
    doc = {"task": cfg.task, "step": meta.get("step"), "split": split, "n_items": len(ds), "data": data or cfg.data.root,
           "metrics": report, "headline": headline(cfg.task, report)}
    if out is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        _write_json(Path(out), doc)
    return doc


def _config_of(meta: dict[str, Any]) -> FinetuneConfig:
    from echocare.config import config_from_dict

    return config_from_dict(FinetuneConfig, meta["config"], validate=False)


def run_protocol(cfg: FinetuneConfig, output_dir: str | Path, fractions: Sequence[float],
                 seeds: int | Sequence[int] = 20) -> dict[str, Any]:
    """Label efficiency x repeated seeds: one fine-tune run per (fraction, seed), then the summary.

    Runs live in ``OUT/frac-<pct>/seed-<s>``; finished runs (their metrics.json exists) are not rerun,
    so an interrupted protocol continues where it stopped. Writes ``OUT/protocol.md``, ``.csv``,
    ``.json`` and ``OUT/label_efficiency.png``.

    Returns:
        ``{"results": {fraction: {metric: [per-seed values]}}, "summary": ..., "files": [...]}``.
    """
    from echocare.data.labeled import scan_dataset
    from echocare.metrics import label_efficiency_table, mean_std, plot_label_efficiency
    from echocare.tasks.finetune_eval import LOWER_IS_BETTER

    out = Path(output_dir)
    seed_list = list(range(seeds)) if isinstance(seeds, int) else list(seeds)
    if not fractions or not seed_list:
        raise ValueError("protocol needs at least one fraction and one seed")
    scanned = scan_dataset(cfg.task, cfg.data.root, _scan_options(cfg))
    results: dict[float, dict[str, list[float]]] = {}
    for frac in sorted(float(f) for f in fractions):
        for seed in seed_list:
            run_dir = out / f"frac-{frac * 100:g}" / f"seed-{seed}"
            done = run_dir / "metrics.json"
            if done.is_file():
                summary = json.loads(done.read_text())
                logger.info("protocol: reusing %s", run_dir)
            else:
                run_cfg = copy.deepcopy(cfg)
                run_cfg.data.train_fraction = frac
                run_cfg.train.seed = seed
                summary = run_finetune(run_cfg, run_dir, resume="auto", scanned=scanned)
            for name, value in summary.get("headline", {}).items():
                results.setdefault(frac, {}).setdefault(name, []).append(float(value))
    if not results:
        raise RuntimeError("protocol: no run produced validation metrics (is there a validation split?)")
    table = label_efficiency_table(results)
    png = plot_label_efficiency({cfg.model.init if cfg.model.init == "random" else Path(cfg.model.init).stem: results},
                                out / "label_efficiency.png", title=f"{cfg.task}: label efficiency")
    rows, summary_doc = [], {}
    for frac, per in sorted(results.items()):
        for name, values in sorted(per.items()):
            s = mean_std(values)
            summary_doc.setdefault(f"{frac:g}", {})[name] = {**s, "values": values}
            rows.append({"fraction": frac, "metric": name, "mean": s["mean"], "std": s["std"], "n": s["n"],
                         "lower_is_better": name in LOWER_IS_BETTER})
    (out / "protocol.md").write_text(f"# {cfg.task}: label efficiency, {len(seed_list)} seeds (mean ± std)\n\n" + table)
    with (out / "protocol.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    _write_json(out / "protocol.json", {"task": cfg.task, "seeds": seed_list, "summary": summary_doc})
    files = [str(out / n) for n in ("protocol.md", "protocol.csv", "protocol.json")] + [str(png)]
    return {"results": results, "summary": summary_doc, "files": files}
