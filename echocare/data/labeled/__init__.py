"""Labeled datasets for fine-tuning: scan user formats, split by group, load model-ready batches.

``scan_dataset(scanner, root, ScanOptions(...))`` finds the items with one of the per-layout scanners
of :mod:`echocare.data.labeled.scan`, :class:`LabeledDataset` decodes and resizes them with one of the
readers of :mod:`echocare.data.labeled.readers`, :class:`EpochLoader` batches them resumably. Which
scanner and reader a fine-tuning task uses is recorded in its task-registry entry
(:mod:`echocare.tasks.registry`); this package knows no task names. Group-aware splits live in :mod:`echocare.data.splits`.
"""

from echocare.data.labeled.dataset import LabeledDataset, collate_labeled, steps_per_epoch
from echocare.data.labeled.loader import EpochLoader
from echocare.data.labeled.readers import ReadContext
from echocare.data.labeled.records import Record, SkipReport
from echocare.data.labeled.scan import LabeledSet, Scanned, ScanOptions, scan_dataset

__all__ = [
    "EpochLoader",
    "LabeledDataset",
    "LabeledSet",
    "ReadContext",
    "Record",
    "ScanOptions",
    "Scanned",
    "SkipReport",
    "collate_labeled",
    "scan_dataset",
    "steps_per_epoch",
]
