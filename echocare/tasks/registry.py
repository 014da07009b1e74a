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

from echocare.tasks.finetune import (
    classification,
    detection,
    enhancement,
    landmarks,
    regression,
    report_generation,
    segmentation,
    video,
)
from echocare.tasks.spec import TaskSpec

__all__ = ["get_task", "list_tasks", "register_task", "unregister_task"]

BUILTIN: tuple[TaskSpec, ...] = (classification.SPEC, segmentation.SPEC, detection.SPEC, landmarks.SPEC,
                                 regression.SPEC, video.SPEC, enhancement.SPEC, report_generation.SPEC)
_TASKS: dict[str, TaskSpec] = {s.name: s for s in BUILTIN}


def register_task(spec: TaskSpec, replace: bool = False) -> TaskSpec:
    """Add ``spec`` under ``spec.name``.

    Raises:
        ValueError: the name is taken and ``replace`` is false.
    """
    if spec.name in _TASKS and not replace:
        raise ValueError(f"task {spec.name!r} is already registered (pass replace=True to override it)")
    _TASKS[spec.name] = spec
    return spec


def unregister_task(name: str) -> None:
    """Remove a task (no error if it is not registered)."""
    _TASKS.pop(name, None)


def get_task(task: str | TaskSpec) -> TaskSpec:
    """The entry of ``task`` (a TaskSpec is returned as is).

    Raises:
        ValueError: unknown task name (the message lists the registered ones).
    """
    if isinstance(task, TaskSpec):
        return task
    try:
        return _TASKS[task]
    except KeyError:
        raise ValueError(f"unknown task {task!r}; registered tasks: {list_tasks()}") from None


def list_tasks() -> list[str]:
    """Registered task names, built-ins first."""
    return list(_TASKS)
