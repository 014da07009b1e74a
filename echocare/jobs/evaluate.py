"""The evaluate job: recompute a fine-tuned model's metrics on its own validation split or on new data."""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from echocare.config import config_from_dict, config_to_yaml, load_config
from echocare.config.finetune import FinetuneConfig
from echocare.data.labeled import scan_dataset
from echocare.errors import DataError
from echocare.jobs.finetune import bind_task, evaluate_and_save, make_dataset, prepare_data, scan_options, write_json
from echocare.tasks.finetune import load_finetuned
from echocare.tasks.finetune.evaluation import headline
from echocare.tasks.registry import get_task

logger = logging.getLogger(__name__)

__all__ = ["evaluate_checkpoint"]


def evaluate_checkpoint(checkpoint: str | Path, data: str | None = None, overrides: Sequence[str] = (),
                        out: str | Path | None = None, device: str = "cpu") -> dict[str, Any]:
    """Recompute a fine-tuned model's metrics.

    Args:
        checkpoint: A fine-tune run directory or its ``model.safetensors``.
        data: Dataset root in the training format; None = the run's own validation split (this
            reproduces ``metrics.json``). With a root, every item of it is evaluated.
        overrides: ``key=value`` config overrides (e.g. ``data.csv=test.csv``, ``eval.batch_size=64``).
        out: Where to write the metrics JSON (None: not written). Tasks with human-readable outputs
            (enhanced-image grids, generated reports) write them to ``<out without suffix>_outputs/``.
        device: Torch device.

    Returns:
        The metrics document (same layout as ``metrics.json``).
    """
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
    spec, _ = bind_task(get_task(cfg.task), cfg, path.parent, saved=dict(meta.get("task_state") or {}))
    if data:
        scanned = scan_dataset(spec.scan, data, scan_options(cfg, names, len(names)), spec.name)
        if scanned.num_outputs != len(names):
            raise DataError(f"{data}: {scanned.num_outputs} {spec.name} outputs ({scanned.class_names}) but the "
                             f"model was trained for {len(names)} ({names})")
        if spec.names_must_match and scanned.class_names != names:
            raise DataError(f"{data}: output names {scanned.class_names} differ from the model's {names}")
        records, split = scanned.records, "all"
    else:
        prepared = prepare_data(cfg)
        records, split = [prepared.val.records[i] for i in prepared.val_idx], "val"
    ds = make_dataset(spec, cfg, records)
    outputs_dir = Path(out).parent / f"{Path(out).stem}_outputs" if out is not None else None
    report, files = evaluate_and_save(model, spec, cfg, ds, names, device, outputs_dir)
    doc = {"task": spec.name, "step": meta.get("step"), "split": split, "n_items": len(ds),
           "data": data or cfg.data.root, "metrics": report, "headline": headline(spec, report)}
    if files:
        doc["outputs"] = files
    if out is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        write_json(Path(out), doc)
    return doc


def _config_of(meta: dict[str, Any]) -> FinetuneConfig:
    return config_from_dict(FinetuneConfig, meta["config"], validate=False)
