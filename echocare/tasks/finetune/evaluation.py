"""Run a fine-tuned model over a labeled dataset and compute its task's metrics.

What is collected per batch and how it is scored is the task's (its registry entry's ``collect`` and
``metrics``). Detection boxes and landmarks are mapped back to each item's *original* pixel coordinates
(so AP / SDR radii are in original pixels); segmentation is scored at the model input size (masks resized
nearest); video classification per video (mean clip probability). Evaluation runs in fp32 with no
augmentation, so re-running it on the same model and items reproduces the numbers exactly.
"""

from __future__ import annotations

import logging
from typing import Any

import torch

from echocare.data.labeled import EpochLoader, LabeledDataset
from echocare.metrics import flatten_metrics
from echocare.tasks.finetune.model import move_batch
from echocare.tasks.registry import get_task
from echocare.tasks.spec import MetricOptions, TaskSpec

logger = logging.getLogger(__name__)

__all__ = ["collect_predictions", "compute_metrics", "evaluate_dataset", "headline"]


@torch.no_grad()
def collect_predictions(model: torch.nn.Module, dataset: LabeledDataset, task: str | TaskSpec, batch_size: int = 16,
                        num_workers: int = 0, device: torch.device | str = "cpu") -> dict[str, Any]:
    """Predictions and ground truth of every item, in dataset order (lists keyed by the task's ``collect``)."""
    spec = get_task(task)
    was_training = model.training
    model.eval()
    loader = EpochLoader(dataset, batch_size, shuffle=False, num_workers=num_workers, drop_last=False)
    out: dict[str, list] = {}
    try:
        for batch in loader:
            batch = move_batch(batch, torch.device(device))
            pred = model.predict(batch["image"].float(), **spec.predict_kwargs)
            records = [dataset.records[i] for i in batch["index"].tolist()]
            spec.collect(pred, batch, records, out)
    finally:
        model.train(was_training)
        loader.close()
    return out


def compute_metrics(task: str | TaskSpec, pred: dict[str, Any], class_names: list[str], ci: bool = True,
                    n_bootstrap: int = 1000, nsd_tolerance: float = 2.0,
                    sdr_radii: tuple[float, ...] = (2.0, 4.0, 10.0), seed: int = 0, **options: Any) -> dict[str, Any]:
    """The task's metric report from :func:`collect_predictions` output (JSON-able).

    ``options`` are the other :class:`~echocare.tasks.spec.MetricOptions` fields (e.g. ``niqe_params``).
    """
    opts = MetricOptions(ci=ci, n_bootstrap=n_bootstrap, nsd_tolerance=nsd_tolerance,
                         sdr_radii=tuple(sdr_radii), seed=seed, **options)
    return get_task(task).metrics(pred, class_names, opts)


def evaluate_dataset(model: torch.nn.Module, dataset: LabeledDataset, task: str | TaskSpec, class_names: list[str],
                     batch_size: int = 16, num_workers: int = 0, device: torch.device | str = "cpu",
                     **metric_kw: Any) -> dict[str, Any]:
    """:func:`collect_predictions` then :func:`compute_metrics`."""
    pred = collect_predictions(model, dataset, task, batch_size, num_workers, device)
    return compute_metrics(task, pred, class_names, **metric_kw)


def headline(task: str | TaskSpec, report: dict[str, Any]) -> dict[str, float]:
    """The task's headline metrics (flattened names, e.g. ``sdr.2``) from a report."""
    flat = flatten_metrics(report)
    return {k: flat[k] for k in get_task(task).headline if k in flat}
