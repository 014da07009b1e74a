"""What a fine-tuning task is: one :class:`TaskSpec` entry in the task registry.

A task bundles everything that differs between fine-tuning tasks, so the jobs, the dataset and the
evaluation code stay generic (none of them compares task names):

* ``head`` / ``head_args``: which head of :func:`echocare.models.heads.create_head` and its arguments;
* ``scan`` / ``read``: how to find the items of a dataset root and how to load one
  (:mod:`echocare.data.labeled.scan`, :mod:`echocare.data.labeled.readers` hold the built-in ones);
* ``hflip_safe``: whether a horizontal flip keeps the labels valid; ``affine_safe``: whether a random
  rotation / zoom / shift does (image-level labels, or a mask transformed with the image);
* ``collect`` / ``metrics``: how to accumulate one batch of predictions and turn them into a report;
* ``headline`` / ``lower_is_better``: the metrics a run summary shows and their direction;
* ``class_of``: a record's class index, for class-balanced sampling (None: not a classification task).

Three optional fields serve tasks with per-run state or outputs beyond numbers (enhancement, report
generation, the WAUVE video path):

* ``bind(spec, RunContext) -> (bound spec, state)``: called once per run after the split (and again by
  ``evaluate`` with the saved state) to return a copy of the spec whose functions carry what the run
  fitted or configured — e.g. a tokenizer trained on the training reports, or a reader with an ROI
  crop. ``state`` (JSON-able) is stored in ``model.safetensors`` as ``task_state`` so a later
  ``bind`` rebuilds the same spec;
* ``predict_kwargs``: keyword arguments of ``model.predict`` (e.g. ``beam_size``), usually set by ``bind``;
* ``save_outputs(collected, records, directory) -> [paths]``: writes what a human looks at (enhanced
  image grids, generated reports beside their references) next to the metrics.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from echocare.data.labeled.readers import Reader
from echocare.data.labeled.records import Record
from echocare.data.labeled.scan import Scanner

__all__ = ["Binder", "Collector", "HeadArgs", "MetricFn", "MetricOptions", "MissingDependencyError", "OutputWriter",
           "RunContext", "TaskSpec", "require_modules"]


class MissingDependencyError(ValueError):
    """A task needs an optional extra that is not installed (a ValueError: the CLI reports it in one line)."""


def require_modules(task: str, modules: tuple[str, ...], extra: str) -> None:
    """Raise :class:`MissingDependencyError` naming the pip extra when one of ``modules`` is not importable."""
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise MissingDependencyError(f"task {task!r} needs {', '.join(missing)}: pip install 'echocare[{extra}]'")


@dataclass(frozen=True)
class MetricOptions:
    """Options shared by every task's metric function (the ``eval.*`` config keys of the same names).

    The fields after ``seed`` serve one task each: enhancement (``niqe_params``, ``brisque_weights``,
    ``inception_weights``, ``save_images``) and report generation (``findings_terms``,
    ``num_findings_terms``, ``wordnet_dir``, ``beam_size``); other tasks ignore them.
    """

    ci: bool = True
    n_bootstrap: int = 1000
    nsd_tolerance: float = 2.0
    sdr_radii: tuple[float, ...] = (2.0, 4.0, 10.0)
    seed: int = 0
    niqe_params: str | None = None
    brisque_weights: str | None = None
    inception_weights: str | None = None
    findings_terms: tuple[str, ...] = ()
    num_findings_terms: int = 20
    wordnet_dir: str | None = None
    beam_size: int = 1
    save_images: int = 64


@dataclass(frozen=True)
class RunContext:
    """What :attr:`TaskSpec.bind` sees.

    Attributes:
        train_records: The training split (empty when rebuilding a saved model).
        directory: The run directory (fitting: where to write files such as a tokenizer; rebuilding: the
            folder of ``model.safetensors``, against which saved file names are resolved).
        saved: The state an earlier ``bind`` returned (from the model file), or None when fitting.
        head_options: ``model.head`` of the config.
        roi: ``data.roi`` of the config.
        options: The ``eval.*`` metric and decoding options.
        resume: Fitting a resumed run (files written by the first attempt may be reused).
    """

    train_records: list[Record]
    directory: Path
    saved: Mapping[str, Any] | None = None
    head_options: Mapping[str, Any] = field(default_factory=dict)
    roi: str | None = None
    options: MetricOptions = field(default_factory=MetricOptions)
    resume: bool = False


#: ``head_args(num_outputs, temporal, train_targets) -> head kwargs`` (``model.head`` is applied on top).
HeadArgs = Callable[[int, bool, list], dict[str, Any]]
#: ``collect(prediction, batch, records, out)``: append one batch's predictions and ground truth to ``out``.
Collector = Callable[[Any, dict[str, Any], list[Record], dict[str, list]], None]
#: ``metrics(collected, class_names, options) -> JSON-able report``.
MetricFn = Callable[[dict[str, list], list[str], MetricOptions], dict[str, Any]]
#: ``bind(spec, ctx) -> (bound spec, JSON-able state for the model file)``.
Binder = Callable[["TaskSpec", RunContext], tuple["TaskSpec", dict[str, Any]]]
#: ``save_outputs(collected, records, directory) -> written files``.
OutputWriter = Callable[[dict[str, list], list[Record], Path], list[Path]]


@dataclass(frozen=True)
class TaskSpec:
    """One fine-tuning task.

    Attributes:
        name: Canonical name (the ``task`` config key).
        head: Head factory name in :func:`echocare.models.heads.create_head`.
        head_args: Head constructor arguments from the scanned data.
        scan: Scanner of a dataset root.
        read: Reader of one record.
        collect: Accumulates predictions of one batch (model ``predict`` output) for the metrics.
        metrics: Report from the collected predictions.
        headline: Flattened metric names a summary shows (the first one selects the best checkpoint).
        lower_is_better: Headline metrics where lower is better.
        hflip_safe: Whether horizontal flips keep the labels valid.
        affine_safe: Whether random rotation / zoom / shift keep the labels valid (``data.rotate`` etc.).
        names_must_match: Evaluating on a new dataset requires the same output names as the model.
        class_of: Class index of a record (enables ``data.balanced``), or None.
        description: One line for help texts.
        bind: Per-run binding (see the module docstring), or None.
        predict_kwargs: Keyword arguments of ``model.predict`` during evaluation.
        save_outputs: Writer of human-readable outputs (see the module docstring), or None.
    """

    name: str
    head: str
    head_args: HeadArgs
    scan: Scanner
    read: Reader
    collect: Collector
    metrics: MetricFn
    headline: tuple[str, ...]
    lower_is_better: frozenset[str] = field(default_factory=frozenset)
    hflip_safe: bool = True
    affine_safe: bool = False
    names_must_match: bool = False
    class_of: Callable[[Record], int] | None = None
    description: str = ""
    bind: Binder | None = None
    predict_kwargs: Mapping[str, Any] = field(default_factory=dict)
    save_outputs: OutputWriter | None = None

    def bound(self, ctx: RunContext) -> tuple[TaskSpec, dict[str, Any]]:
        """``bind(self, ctx)``, or ``(self, {})`` for a task without per-run state."""
        return self.bind(self, ctx) if self.bind is not None else (self, {})

    def better(self, metric: str, new: float, old: float | None) -> bool:
        """Whether ``new`` improves on ``old`` for ``metric`` (any value beats None)."""
        if old is None:
            return True
        return new < old if metric in self.lower_is_better else new > old
