"""The fine-tuning task registry: task name -> :class:`~echocare.tasks.spec.TaskSpec`.

The built-in tasks are one module each under :mod:`echocare.tasks.finetune` (classification,
segmentation, detection, landmarks, regression, video, enhancement, report_generation); each defines
one ``SPEC``. A user task is one
:func:`register_task` call (see docs/finetuning.md, "Add a task")::

    from echocare.tasks.registry import register_task
    register_task(TaskSpec(name="brightness", head="regression", ...))

The registry is the one deliberate piece of mutable module state in echocare (like timm's model
registry): it starts with the built-in tasks, and :func:`register_task` / :func:`unregister_task` change
it for the current process only.
"""

from __future__ import annotations

import functools
import importlib

from echocare.tasks.spec import TaskSpec

__all__ = ["BUILTIN_MODULES", "get_task", "list_tasks", "register_task", "unregister_task"]

BUILTIN_MODULES = ("classification", "segmentation", "detection", "landmarks", "regression", "video",
                   "enhancement", "report_generation")
_CHANGES: dict[str, TaskSpec | None] = {}  # register_task / unregister_task since start (None = removed)


@functools.cache
def _builtin() -> dict[str, TaskSpec]:
    """The built-in entries, imported on first use: their modules import this one, so they cannot be
    imported at the top of this module."""
    specs = (importlib.import_module(f"echocare.tasks.finetune.{m}").SPEC for m in BUILTIN_MODULES)
    return {spec.name: spec for spec in specs}


def _registry() -> dict[str, TaskSpec]:
    tasks = dict(_builtin())
    for name, spec in _CHANGES.items():
        if spec is None:
            tasks.pop(name, None)
        else:
            tasks[name] = spec
    return tasks


def register_task(spec: TaskSpec, replace: bool = False) -> TaskSpec:
    """Add ``spec`` under ``spec.name``.

    Raises:
        ValueError: the name is taken and ``replace`` is false.
    """
    if spec.name in _registry() and not replace:
        raise ValueError(f"task {spec.name!r} is already registered (pass replace=True to override it)")
    _CHANGES[spec.name] = spec
    return spec


def unregister_task(name: str) -> None:
    """Remove a task (no error if it is not registered)."""
    _CHANGES[name] = None


def get_task(task: str | TaskSpec) -> TaskSpec:
    """The entry of ``task`` (a TaskSpec is returned as is).

    Raises:
        ValueError: unknown task name (the message lists the registered ones).
    """
    if isinstance(task, TaskSpec):
        return task
    try:
        return _registry()[task]
    except KeyError:
        raise ValueError(f"unknown task {task!r}; registered tasks: {list_tasks()}") from None


def list_tasks() -> list[str]:
    """Registered task names, built-ins first."""
    return list(_registry())
