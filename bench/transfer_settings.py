"""Settings of the transfer benchmark (bench/transfer.py): per-task budgets, the tasks to run, the settings that
decide a benchmark folder (a folder is reused only with the same ones)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

TASKS = ("segmentation", "regression", "classification")
HC18_LABEL = "fetus/brain/transthalamic"  # the HC plane (packaged ontology)


def per_task_arg(text: str) -> str:
    """Validate ``N`` or ``TASK=N,TASK=N`` (tasks of :data:`TASKS`); kept as the text."""
    try:
        if "=" not in text:
            int(text)
        else:
            for part in [p for p in text.split(",") if p.strip()]:
                task, value = part.split("=", 1)
                if task not in TASKS:
                    raise ValueError(f"unknown task {task!r}")
                int(value)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"{text!r}: give N or TASK=N,... with TASK in {', '.join(TASKS)} "
                                         f"({err})") from None
    return text


def task_value(text: str, task: str) -> int:
    """The integer for ``task`` in ``N`` or ``TASK=N,...``.

    Raises:
        ValueError: ``TASK=N,...`` without ``task``.
    """
    if "=" not in text:
        return int(text)
    values = dict(part.split("=", 1) for part in text.split(",") if part.strip())
    if task not in values:
        raise ValueError(f"{text!r} gives no value for {task}")
    return int(values[task])


def settings_of(args: argparse.Namespace) -> dict:
    """The settings that decide a benchmark folder's results (``settings.json``)."""
    keys = ("data", "pool", "label", "recipe", "model", "img_size", "steps", "batch", "ft_steps", "ft_batch", "ft_eval_every",
            "seg_feature_size", "precision",
            "split", "split_seed", "limit_subjects", "set", "ft_set")
    settings = {k: getattr(args, k) for k in keys}
    if args.pretrain_seeds > 1:  # (absent = 1: folders made before the option stay reusable)
        settings["pretrain_seeds"] = args.pretrain_seeds
    if args.head_init:  # (absent = off, likewise)
        settings["head_init"] = True
    if args.hc_target != "mm":  # (absent = mm, the target before the option existed)
        settings["hc_target"] = args.hc_target
    return settings


def _same_setting(key: str, old: object, new: object) -> bool:
    """Equal settings; per-task budgets compare by the value they give each task (``800`` equals
    ``segmentation=800,regression=800`` for a folder that ran those two tasks)."""
    if old == new or key not in ("ft_steps", "ft_eval_every") or not (isinstance(old, str) and isinstance(new, str)):
        return old == new

    def values(text: str) -> dict[str, int]:
        out = {}
        for task in TASKS:
            try:
                out[task] = task_value(text, task)
            except ValueError:
                pass
        return out

    a, b = values(old), values(new)
    return all(a[t] == b[t] for t in set(a) & set(b))


def check_settings(out: Path, settings: dict) -> None:
    """Raise ValueError when ``out`` holds a run with other settings."""
    path = out / "settings.json"
    if path.is_file():
        old = json.loads(path.read_text())
        diff = {k: (old.get(k), v) for k, v in settings.items() if not _same_setting(k, old.get(k), v)}
        if diff:
            raise ValueError(f"{out} holds a run with other settings {diff}; use another --out")


def default_label(data: Path) -> str:
    """``--label`` when not given: HC18's plane for a set with HC labels, else unlabeled."""
    try:
        with (data / "labels.csv").open() as fh:
            header = fh.readline()
    except OSError:
        return ""
    return HC18_LABEL if "hc_mm" in header.strip().split(",") else ""


def resolve_tasks(args: argparse.Namespace, out: Path, available: list[str]) -> list[str]:
    """The tasks to run: ``--tasks`` (``auto``: every task the set supports), each supported by the set and given a
    fine-tuning budget.

    Raises:
        ValueError: a task unknown, not supported by the set's labels.csv, or without a budget; HC in pixels
            without pixel sizes.
    """
    tasks = list(available) if args.tasks == "auto" else [t for t in args.tasks.split(",") if t]
    unknown = [t for t in tasks if t not in TASKS]
    if unknown:
        raise ValueError(f"unknown task(s) {unknown}; choose from {', '.join(TASKS)}")
    missing = [t for t in tasks if t not in available]
    if missing:
        raise ValueError(f"{Path(args.data) / 'labels.csv'} has no labels for {', '.join(missing)} (it supports "
                         f"{', '.join(available)}; see bench/transfer_data.py for the columns)")
    for option, text in (("--ft-steps", args.ft_steps), ("--ft-eval-every", args.ft_eval_every)):
        for t in tasks:
            try:
                task_value(text, t)
            except ValueError as err:
                raise ValueError(f"{option}: {err}; give N for every task, or {t}=N too") from None
    values = out / "data" / "train" / "values.csv"
    if "regression" in tasks and args.hc_target == "px" and "hc_px" not in values.read_text().split("\n", 1)[0]:
        raise ValueError(f"--hc-target px needs pixel sizes (pixel_size_mm_original, scale_factor) in "
                         f"{Path(args.data) / 'labels.csv'}, and a --out whose data was built with them")
    return tasks
