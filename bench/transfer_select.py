#!/usr/bin/env python
"""Choose each init's fine-tuning setting on the validation subjects, across finished transfer benchmarks.

One ``bench/transfer.py`` run fine-tunes every init with one setting (the recipe's lr, say). A pretrained init
may want another setting than random init, and comparing both at one setting can under- or overstate what
pretraining buys. Given finished runs that differ only in ``--ft-set`` (same data, split, encoders, seeds and
budgets), this picks, for every (task, init, label fraction), the run whose fine-tunes scored best on the
validation subjects — the mean over seeds of each fine-tune's best periodic validation score, the value
``echocare finetune`` kept its weights on — and writes the usual report (``results.md``, ``results.json``,
plots) from the chosen cells' test scores, plus a table of every candidate's validation score. The test set
plays no part in the choice. Ties go to the run named first.

Example::

    python bench/transfer_select.py --out runs/transfer-select \\
        runs/transfer runs/transfer-lr3e-4 runs/transfer-lr1e-3     # each: bench/transfer.py --ft-set optim.lr=...
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

import numpy as np

from transfer_data import baseline_sentences
from transfer_report import INIT_LABELS, TASK_METRICS, build_report


def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: is {path.parent} a finished bench/transfer.py --out folder?")
    return json.loads(path.read_text())


def read_cells(run: Path) -> dict:
    """``{(task, init, fraction, seed): {"val": best validation value, "on": metric, "test": test result}}``."""
    cells = {}
    for done in sorted(run.glob("finetune/*/*/frac-*/seed-*/test_result.json")):
        task, init, frac, seed = done.relative_to(run).parts[1:5]  # finetune/TASK/INIT/frac-F/seed-S/...
        metrics = _read_json(done.parent / "metrics.json")
        if metrics.get("best_value") is None:
            raise ValueError(f"{done.parent} has no periodic validation (best_value): fine-tune with train.eval_every")
        key = (task, init, float(frac.removeprefix("frac-")) / 100, int(seed.removeprefix("seed-")))
        cells[key] = {"val": float(metrics["best_value"]), "on": metrics["selected_on"],
                      "test": json.loads(done.read_text())}
    if not cells:
        raise ValueError(f"{run} holds no finished fine-tuning cells")
    return cells


def check_comparable(settings: list[dict], runs: list[Path]) -> None:
    """The runs may differ in ``ft_set`` only, and each in a different one."""
    base = settings[0]
    for s, run in zip(settings[1:], runs[1:]):
        diff = {k: (base.get(k), s.get(k)) for k in set(base) | set(s) if k != "ft_set" and base.get(k) != s.get(k)}
        if diff:
            raise ValueError(f"{run} and {runs[0]} differ in more than --ft-set: {diff}")
    seen = [json.dumps(s["ft_set"]) for s in settings]
    if len(set(seen)) != len(seen):
        raise ValueError("two runs have the same --ft-set; each run should try another setting")


def select(per_run: list[dict], labels: list[str]) -> tuple[dict, list[dict]]:
    """Pick one run per (task, init, fraction) on validation; return its cells and the candidates' table.

    A run is a candidate for a (task, init, fraction) when it holds every seed the union of runs holds there.
    Raises ValueError when no run does, or when a candidate kept its weights on another metric than the task's
    headline (its validation scores would not compare).
    """
    groups: dict[tuple, set[int]] = {}
    for cells in per_run:
        for task, init, frac, seed in cells:
            groups.setdefault((task, init, frac), set()).add(seed)
    chosen: dict = {}
    table = []
    for (task, init, frac), seeds in sorted(groups.items()):
        _, headline, higher = TASK_METRICS[task]
        scored = []
        for i, cells in enumerate(per_run):
            got = [cells.get((task, init, frac, s)) for s in sorted(seeds)]
            if all(got):
                wrong = {c["on"] for c in got} - {headline}
                if wrong:
                    raise ValueError(f"{labels[i]}: {task} {init} fine-tunes kept their weights on {sorted(wrong)}, "
                                     f"not on the headline {headline}; their validation scores do not compare")
                scored.append((i, float(np.mean([c["val"] for c in got])), headline))
        if not scored:
            raise ValueError(f"no run holds every seed {sorted(seeds)} of {task} {init} at {frac * 100:g}% labels")
        best = scored[0]
        for cand in scored[1:]:  # strictly better only: ties stay with the run named first
            if (cand[1] > best[1]) if higher else (cand[1] < best[1]):
                best = cand
        for s in sorted(seeds):
            chosen[(task, init, frac, s)] = per_run[best[0]][(task, init, frac, s)]["test"]
        table += [{"task": task, "init": init, "fraction": frac, "run": labels[i], "val_metric": on, "val": v,
                   "chosen": i == best[0]} for i, v, on in scored]
    return chosen, table


def selection_markdown(table: list[dict], labels: list[str], commands: list[str]) -> list[str]:
    """The report's section on the choice: every candidate's validation score, and inits that were tuned less."""
    md = ["## Fine-tuning setting chosen on validation", "",
          "Each candidate's validation score is the mean over seeds of its fine-tunes' best periodic validation "
          "value (the one `echocare finetune` kept its weights on); the chosen run's test scores fill the tables "
          "above (regression with `--hc-target px` validates in pixels). Candidates:", "",
          *[f"- `{lab}`: `{cmd}`" for lab, cmd in zip(labels, commands)], "",
          "| task | init | labels | run | validation | chosen |", "|---|---|---:|---|---:|---|"]
    md += [f"| {r['task']} | {INIT_LABELS.get(r['init'], r['init'])} | {r['fraction'] * 100:g}% | `{r['run']}` | "
           f"{r['val_metric']} {r['val']:.4f} | {'**yes**' if r['chosen'] else ''} |" for r in table]
    n_candidates: dict[tuple, int] = {}
    for r in table:
        key = (r["task"], r["init"], r["fraction"])
        n_candidates[key] = n_candidates.get(key, 0) + 1
    fewer = sorted({init for (_, init, _), n in n_candidates.items() if n < max(n_candidates.values())})
    if fewer:
        names = ", ".join(INIT_LABELS.get(i, i) for i in fewer)
        md += ["", f"Fewer candidates than the others (tuned less): {names}."]
    return md


def main(argv: list[str] | None = None) -> int:
    """Select and report; exit 2 on a user error."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="report folder (results.md, results.json, plots)")
    p.add_argument("runs", nargs="+", help="finished bench/transfer.py --out folders that differ in --ft-set only")
    p.add_argument("--n-bootstrap", type=int, default=1000, help="bootstrap resamples per paired CI")
    args = p.parse_args(argv)
    runs = [Path(r) for r in args.runs]
    try:
        results = [_read_json(r / "results.json") for r in runs]
        settings = [_read_json(r / "settings.json") for r in runs]
        check_comparable(settings, runs)
        per_run = [read_cells(r) for r in runs]
        labels = [" ".join(s["ft_set"]) or "(recipe)" for s in settings]
        chosen, table = select(per_run, labels)
    except (FileNotFoundError, ValueError) as err:
        print(f"transfer_select: error: {err}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    first = results[0]["settings"]
    command = "python bench/transfer_select.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    report_settings = {**settings[0], "ft_set": "chosen per init on validation", "command": command,
                       **{k: first[k] for k in ("seeds", "pretrain_seeds", "fractions", "split")},
                       "candidates": [{"run": str(r), "ft_set": s["ft_set"], "command": res["settings"]["command"]}
                                      for r, s, res in zip(runs, settings, results)]}
    tasks = sorted({cell[0] for cell in chosen})  # (task, init, fraction, seed)
    baselines = baseline_sentences(runs[0] / "data", tasks, settings[0].get("hc_target", "mm"))
    doc = build_report(chosen, report_settings, results[0]["pretraining"], out, args.n_bootstrap, baselines)
    md = selection_markdown(table, labels, [c["command"] for c in report_settings["candidates"]])
    (out / "results.md").write_text((out / "results.md").read_text() + "\n" + "\n".join(md) + "\n")
    doc["selection"] = table
    (out / "results.json").write_text(json.dumps(doc, indent=1, default=float))
    print(out / "results.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
