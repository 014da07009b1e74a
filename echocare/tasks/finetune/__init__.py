"""Fine-tuning: backbone + task head as an engine task, one module per built-in task, evaluation.

* :mod:`~echocare.tasks.finetune.model` — backbone building, :class:`FinetuneTask`, save/load;
* :mod:`~echocare.tasks.finetune.evaluation` — predictions and metrics of a model on a dataset;
* ``classification``, ``segmentation``, ``detection``, ``landmarks``, ``regression``, ``video`` — one
  :class:`~echocare.tasks.spec.TaskSpec` each, collected by :mod:`echocare.tasks.registry`.
"""

from echocare.tasks.finetune.evaluation import collect_predictions, compute_metrics, evaluate_dataset, headline
from echocare.tasks.finetune.model import (
    FINETUNE_FORMAT,
    FinetuneTask,
    build_backbone,
    build_finetune_model,
    build_head,
    head_arguments,
    init_head_from_decoder,
    load_finetuned,
    move_batch,
    read_pretrained_decoder,
    save_finetuned,
)

__all__ = ["FINETUNE_FORMAT", "FinetuneTask", "build_backbone", "build_finetune_model", "build_head",
           "collect_predictions", "compute_metrics", "evaluate_dataset", "head_arguments", "headline",
           "init_head_from_decoder", "load_finetuned", "move_batch", "read_pretrained_decoder", "save_finetuned"]
