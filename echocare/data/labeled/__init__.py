"""Labeled datasets for fine-tuning: scan user formats, split by group, load model-ready batches.

``scan_dataset(task, root, ScanOptions(...))`` finds the items (see :mod:`echocare.data.labeled.scan`
for the accepted layouts), :class:`LabeledDataset` decodes and resizes them, :class:`EpochLoader`
batches them resumably. Group-aware splits live in :mod:`echocare.data.splits`.
"""

from echocare.data.labeled.dataset import LabeledDataset, collate_labeled, steps_per_epoch
from echocare.data.labeled.loader import EpochLoader
from echocare.data.labeled.records import Record, SkipReport
from echocare.data.labeled.scan import TASKS, LabeledSet, ScanOptions, scan_dataset

__all__ = [
    "TASKS",
    "EpochLoader",
    "LabeledDataset",
    "LabeledSet",
    "Record",
    "ScanOptions",
    "SkipReport",
    "collate_labeled",
    "scan_dataset",
    "steps_per_epoch",
]
