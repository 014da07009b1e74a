"""Per-image test scores and the report (results.md, results.json, label-efficiency plots) of bench/transfer.py.

Per-image scores come from the fine-tuned model's predictions on the held-out test subjects: Dice of the head
mask (segmentation, at the model input size like ``echocare evaluate``), absolute HC error in mm (regression) and
whether the predicted class is right (classification: 1 or 0, so its deltas and gap closed are in accuracy; the
table also shows ``echocare evaluate``'s macro-F1 and AUC).
Deltas are paired on test images: each image's score is averaged over seeds per init, the per-image difference
``init - reference`` is resampled (percentile bootstrap, ``echocare.metrics.bootstrap_ci``) for a 95% CI of its
mean. That CI covers the test images only; with two or more seeds a second CI resamples seeds and test images
together (two-level bootstrap), so it also covers the fine-tuning runs and, with ``--pretrain-seeds``, the
pretraining runs.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Callable

import numpy as np

logger = logging.getLogger("transfer.report")

# per-image metric, headline metric of the table, whether higher is better
TASK_METRICS = {
    "segmentation": ("dice", "mean_dice", True),
    "regression": ("abs_error_mm", "mae", False),
    "classification": ("correct", "accuracy", True),
}
INIT_LABELS = {
    "random": "random init",
    "echocare": "echocare (L_MIM + L_HIE)",
    "echocare_mim": "echocare MIM only (hie_weight=0)",
    "hf_simmim": "HF SwinForMaskedImageModeling (SimMIM)",
}


def _predict(run_dir: Path, task: str, data: Path) -> tuple[list[str], dict[str, Any]]:
    """Test-set predictions of a fine-tuned run: ``(file names, collect_predictions output)``.

    The one place that uses echocare internals: the loader behind ``echocare evaluate``.
    """
    from echocare.config import config_from_dict
    from echocare.config.finetune import FinetuneConfig
    from echocare.data.labeled import scan_dataset
    from echocare.jobs.finetune import make_dataset, scan_options
    from echocare.tasks.finetune import load_finetuned
    from echocare.tasks.finetune.evaluation import collect_predictions
    from echocare.tasks.registry import get_task

    model, meta = load_finetuned(run_dir / "model.safetensors")
    names = list(meta["class_names"])
    cfg = config_from_dict(FinetuneConfig, meta["config"], validate=False)
    cfg.data.root, cfg.data.val_root = str(data), None
    spec = get_task(task)
    scanned = scan_dataset(spec.scan, data, scan_options(cfg, names, len(names)), spec.name)
    ds = make_dataset(spec, cfg, scanned.records)
    pred = collect_predictions(model, ds, spec, batch_size=32)
    return [Path(r.path).name for r in scanned.records], pred


def per_image_scores(run_dir: Path, task: str, test_dir: Path) -> dict[str, float]:
    """``{image name: score}`` of a fine-tuned run on the test set (Dice, absolute error, or 1 / 0 for a right /
    wrong class)."""
    from echocare.metrics.segmentation import dice_per_class

    data = {"segmentation": test_dir, "classification": test_dir / "labels.csv"}.get(task, test_dir / "values.csv")
    names, pred = _predict(run_dir, task, data)
    if task == "classification":
        values = [float(int(np.argmax(p)) == int(y)) for p, y in zip(pred["probs"], pred["labels"])]
    elif task == "segmentation":
        import torch

        dsc = dice_per_class(torch.cat(pred["pred"]), torch.cat(pred["gt"]), 2)  # (N, 2): background, head
        values = [float(v) for v in dsc[:, 1]]
    else:
        values = [float(abs(np.asarray(p).ravel()[0] - np.asarray(g).ravel()[0]))
                  for p, g in zip(pred["pred"], pred["gt"])]
    if len(values) != len(names):
        raise RuntimeError(f"{run_dir}: {len(values)} predictions for {len(names)} test images")
    return dict(zip(names, values))


def _mean_std(values: list[float]) -> tuple[float, float]:
    arr = np.asarray(values, float)
    return float(arr.mean()), float(arr.std(ddof=1)) if len(arr) > 1 else 0.0


def paired_delta(a: dict[str, list[float]], b: dict[str, list[float]], n_bootstrap: int,
                 seed: int = 0) -> dict[str, float]:
    """Mean per-image difference ``a - b`` (per-image scores averaged over seeds first) with a 95% bootstrap CI."""
    from echocare.metrics.bootstrap import bootstrap_ci

    names = sorted(set(a) & set(b))
    if not names:
        raise ValueError("paired_delta: no common test images")
    diff = np.asarray([np.mean(a[n]) - np.mean(b[n]) for n in names])
    lo, hi = bootstrap_ci(np.mean, diff, n=n_bootstrap, seed=seed)
    return {"delta": float(diff.mean()), "ci_low": lo, "ci_high": hi, "n_images": len(names)}


def _two_level_bootstrap(cells: list[dict[str, list[float]]], stat: Callable[..., float], n_bootstrap: int,
                         seed: int, who: str) -> tuple[float, float] | None:
    """95% percentile CI of ``stat(*grids)`` resampling seeds *and* test images (two-level bootstrap).

    Each cell maps a test image to its per-seed scores, in seed order. Each resample draws image names and seed
    indices with replacement, the same draw for every cell (images are paired across cells, seeds across inits),
    and calls ``stat`` with each cell's drawn ``(images, seeds)`` grid; a NaN statistic is left out.

    Returns:
        ``(low, high)``, or None with fewer than two seeds or unequal seed counts.
    """
    names = sorted(set.intersection(*(set(c) for c in cells)))
    if not names:
        raise ValueError(f"{who}: no common test images")
    lengths = {len(c[n]) for c in cells for n in names}
    if len(lengths) != 1 or lengths.pop() < 2:
        return None
    arrays = [np.asarray([c[n] for n in names], float) for c in cells]  # each (images, seeds)
    n_img, n_seed = arrays[0].shape
    rng = np.random.default_rng(seed)
    stats = np.empty(n_bootstrap)
    for r in range(n_bootstrap):
        grid = np.ix_(rng.integers(0, n_img, n_img), rng.integers(0, n_seed, n_seed))
        stats[r] = stat(*(x[grid] for x in arrays))
    lo, hi = np.nanpercentile(stats, [2.5, 97.5])
    return float(lo), float(hi)


def paired_delta_seeds(a: dict[str, list[float]], b: dict[str, list[float]], n_bootstrap: int,
                       seed: int = 0) -> tuple[float, float] | None:
    """95% CI of the mean paired difference ``a - b`` resampling seeds *and* test images (two-level bootstrap).

    ``a[name]`` and ``b[name]`` hold one score per seed, in seed order; seed ``s`` of ``a`` is paired with seed
    ``s`` of ``b``. Each resample takes the mean difference over the drawn (image, seed) grid.

    Returns:
        ``(low, high)``, or None with fewer than two seeds or unequal seed counts.
    """
    return _two_level_bootstrap([a, b], lambda x, y: (x - y).mean(), n_bootstrap, seed, "paired_delta_seeds")


def _collect(runs: dict) -> dict:
    """``{task: {init: {fraction: {"headline": {m: [per seed]}, "per_image": {name: [per seed]}}}}}``."""
    out: dict = {}
    for (task, init, frac, _seed), run in sorted(runs.items()):
        cell = out.setdefault(task, {}).setdefault(init, {}).setdefault(frac, {"headline": {}, "per_image": {}})
        for k, v in run["headline"].items():
            cell["headline"].setdefault(k, []).append(float(v))
        for name, v in run["per_image"].items():
            cell["per_image"].setdefault(name, []).append(float(v))
    return out


def gap_closed(random: dict[float, float], init: dict[float, float]) -> dict[float, float]:
    """Share of the label gap an init closes at every fraction f below the largest one F (where both have runs):
    ``(init@f − random@f) / (random@F − random@f)``; NaN where random init has no gap at f."""
    full = max(random)
    return {f: (init[f] - random[f]) / (random[full] - random[f]) if random[full] != random[f] else float("nan")
            for f in sorted(init) if f in random and f != full}


def gap_closed_ci(random_low: dict[str, list[float]], random_full: dict[str, list[float]],
                  init_low: dict[str, list[float]], n_bootstrap: int, seed: int = 0) -> tuple[float, float] | None:
    """95% CI of the gap an init closes at a low fraction, resampling seeds *and* test images (two-level bootstrap).

    Each argument maps a test image to its per-seed scores, in seed order. Each resample draws seed indices and
    image names with replacement, the same draw for the three cells (images are paired across cells, seeds
    across inits), and takes ``(init@low − random@low) / (random@full − random@low)`` of the drawn grid's means,
    like ``gap_closed`` (a resample with no gap is left out).

    Returns:
        ``(low, high)``, or None with fewer than two seeds or unequal seed counts.
    """
    def ratio(low: np.ndarray, full: np.ndarray, init: np.ndarray) -> float:
        gap = full.mean() - low.mean()
        return (init.mean() - low.mean()) / gap if gap != 0 else float("nan")

    return _two_level_bootstrap([random_low, random_full, init_low], ratio, n_bootstrap, seed, "gap_closed_ci")


def _gap_section(per_init: dict, means: dict, headline: str, n_bootstrap: int, task_doc: dict) -> list[str]:
    """The "gap closed" lines of one task (with a seeds × images CI where there are seeds); fills ``task_doc``."""
    fracs = sorted(means.get("random", {}))
    if len(fracs) < 2:
        return []
    low, full = fracs[0], fracs[-1]
    if len(fracs) == 2:
        what = (f"Gap closed at {low * 100:g}% labels ({headline}): (init − random@{low * 100:g}%) / "
                f"(random@{full * 100:g}% − random@{low * 100:g}%)")
    else:
        what = (f"Gap closed at each label fraction f below {full * 100:g}% ({headline}): (init − "
                f"random@f) / (random@{full * 100:g}% − random@f)")
    lines, any_ci = [], False
    for init in per_init:
        if init == "random" or low not in means[init]:
            continue
        gaps = gap_closed(means["random"], means[init])
        task_doc["gap_closed"][init] = gaps[low]
        cis = {f: gap_closed_ci(per_init["random"][f]["per_image"], per_init["random"][full]["per_image"],
                                per_init[init][f]["per_image"], n_bootstrap) for f in gaps}
        shown = {f: f"{g:.2f}" + (f" [{cis[f][0]:.2f}, {cis[f][1]:.2f}]" if cis[f] is not None else "")
                 for f, g in gaps.items()}
        if any(ci is not None for ci in cis.values()):
            any_ci = True
            task_doc.setdefault("gap_closed_ci_seeds", {})[init] = {
                f"{f:g}": list(ci) if ci is not None else None for f, ci in cis.items()}
        if len(fracs) == 2:
            lines.append(f"- {INIT_LABELS.get(init, init)}: {shown[low]}")
        else:
            task_doc.setdefault("gap_closed_by_fraction", {})[init] = {f"{f:g}": g for f, g in gaps.items()}
            lines.append(f"- {INIT_LABELS.get(init, init)}: " + ", ".join(f"{f * 100:g}%: {shown[f]}" for f in gaps))
    ci_note = "; in brackets its 95% bootstrap CI over seeds × test images" if any_ci else ""
    rf, rl = per_init["random"][full]["per_image"], per_init["random"][low]["per_image"]
    own = paired_delta(rf, rl, n_bootstrap)
    seeds_ci = paired_delta_seeds(rf, rl, n_bootstrap)
    ci = seeds_ci or (own["ci_low"], own["ci_high"])  # (one seed: the CI over test images)
    task_doc["random_gap"] = {**own, **({"ci_seeds_low": ci[0], "ci_seeds_high": ci[1]} if seeds_ci else {})}
    denominator = (f"Random init's own gap, random@{full * 100:g}% − random@{low * 100:g}% per test image: "
                   f"{own['delta']:+.4f}, 95% CI [{ci[0]:+.4f}, {ci[1]:+.4f}]"
                   + ("; it spans 0, so the ratio divides by noise." if ci[0] <= 0 <= ci[1] else "."))
    return ["", f"{what}{ci_note}; the goal is ≥ 0.5. {denominator}", "", *lines]


def build_report(runs: dict, settings: dict, pretrain: dict, out: Path, n_bootstrap: int = 1000,
                 baselines: dict[str, str] | None = None) -> dict:
    """Write ``results.md``, ``results.json`` and ``label_efficiency_<task>.png``; return the results document.

    Args:
        runs: ``{(task, init, fraction, seed): {"headline": {...}, "per_image": {...}}}``.
        settings: the benchmark settings (written into both files).
        pretrain: per pretrained init, its final losses and flags.
        out: output folder.
        n_bootstrap: bootstrap resamples of each paired CI.
        baselines: per task, a sentence printed under its table (e.g. what predicting the mean scores).
    """
    from echocare.metrics import plot_label_efficiency

    cells = _collect(runs)
    doc: dict[str, Any] = {"settings": settings, "pretraining": pretrain, "tasks": {}}
    md = ["# Transfer benchmark results", "",
          f"Command: `{settings['command']}`", "",
          f"Seeds: {settings['seeds']}; label fractions: {settings['fractions']}; test images: "
          f"{settings['split']['n']['test']} ({len(settings['split']['subjects']['test'])} subjects, never seen in "
          "pretraining or fine-tuning). Cells: mean ± std over seeds of the test metric (`echocare evaluate`).", ""]
    for task, per_init in cells.items():
        per_image_metric, headline, higher = TASK_METRICS[task]
        task_doc: dict[str, Any] = {"per_image_metric": per_image_metric, "higher_is_better": higher, "cells": {},
                                    "deltas": [], "gap_closed": {}}
        metrics = sorted({m for init in per_init.values() for c in init.values() for m in c["headline"]})
        md += [f"## {task}", "", "| init | labels | " + " | ".join(metrics) + " |",
               "|---|---:|" + "---:|" * len(metrics)]
        for init, per_frac in per_init.items():
            for frac, cell in sorted(per_frac.items()):
                stats = {m: _mean_std(cell["headline"][m]) for m in metrics if m in cell["headline"]}
                task_doc["cells"].setdefault(init, {})[f"{frac:g}"] = {
                    m: {"mean": s[0], "std": s[1], "values": cell["headline"][m]} for m, s in stats.items()}
                row = [f"{stats[m][0]:.4f} ± {stats[m][1]:.4f}" if m in stats else "–" for m in metrics]
                md.append(f"| {INIT_LABELS.get(init, init)} | {frac * 100:g}% | " + " | ".join(row) + " |")
        if baselines and task in baselines:
            task_doc["baseline"] = baselines[task]
            md += ["", baselines[task]]
        pairs = [(i, "random") for i in per_init if i != "random" and "random" in per_init]
        pairs += [(a, b) for a, b in (("echocare", "echocare_mim"), ("echocare", "hf_simmim"),
                                      ("echocare_mim", "hf_simmim")) if a in per_init and b in per_init]
        md += ["", f"Paired deltas on test images ({per_image_metric}, per image averaged over seeds; "
                   f"{'higher' if higher else 'lower'} is better), 95% bootstrap CIs ({n_bootstrap} resamples) over "
                   "test images, and over seeds × test images (which also covers the runs' own randomness):", "",
               "| comparison | labels | delta | 95% CI (images) | 95% CI (seeds × images) | images |",
               "|---|---:|---:|---|---|---:|"]
        for a, b in pairs:
            for frac in sorted(set(per_init[a]) & set(per_init[b])):
                pa, pb = per_init[a][frac]["per_image"], per_init[b][frac]["per_image"]
                d = paired_delta(pa, pb, n_bootstrap)
                both = paired_delta_seeds(pa, pb, n_bootstrap)
                if both is not None:
                    d["ci_seeds_low"], d["ci_seeds_high"] = both
                task_doc["deltas"].append({"a": a, "b": b, "fraction": frac, **d})
                seeds_ci = f"[{both[0]:+.4f}, {both[1]:+.4f}]" if both is not None else "– (one seed)"
                md.append(f"| {a} − {b} | {frac * 100:g}% | {d['delta']:+.4f} | [{d['ci_low']:+.4f}, "
                          f"{d['ci_high']:+.4f}] | {seeds_ci} | {d['n_images']} |")
        means = {init: {f: _mean_std(c["headline"][headline])[0] for f, c in pf.items() if headline in c["headline"]}
                 for init, pf in per_init.items()}
        md += _gap_section(per_init, means, headline, n_bootstrap, task_doc)
        curves = {INIT_LABELS.get(i, i): {f: c["headline"] for f, c in pf.items()} for i, pf in per_init.items()}
        png = plot_label_efficiency(curves, out / f"label_efficiency_{task}.png",
                                    title=f"{Path(settings.get('data') or 'downstream').name} {task}: test set")
        task_doc["plot"] = png.name
        md += ["", f"![{task} label efficiency]({png.name})", ""]
        doc["tasks"][task] = task_doc
    k = settings.get("pretrain_seeds", 1)
    md += ["## Pretraining", "",
           *([f"{k} pretraining runs per pretrained init (`<init>-seed<k>`: the recipe's train.seed + k); "
              f"fine-tuning seed s starts from run s mod {k}.", ""] if k > 1 else []),
           "| init | steps | final loss_mim | final loss_hie | L_HIE collapsed early |", "|---|---:|---:|---:|---|"]
    for init, p in pretrain.items():
        base, _, run_seed = init.partition("-seed")
        label = INIT_LABELS.get(base, base) + (f", pretraining run {run_seed}" if run_seed else "")
        md.append(f"| {label} | {p.get('steps', '–')} | {p.get('loss_mim', float('nan')):.4f} | "
                  f"{p.get('loss_hie', float('nan')):.2e} | {p.get('hie_collapsed', '–')} |")
    md.append("")
    (out / "results.md").write_text("\n".join(md))
    (out / "results.json").write_text(json.dumps(doc, indent=1, default=float))
    return doc
