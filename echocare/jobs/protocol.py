"""The protocol job: label-efficiency fractions x repeated seeds of fine-tuning, summarised.

Mean ± std table (markdown, CSV, JSON) and plot (PNG) via :mod:`echocare.metrics.summary`.
"""

from __future__ import annotations

import copy
import csv
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from echocare.config.finetune import FinetuneConfig
from echocare.data.labeled import scan_dataset
from echocare.errors import DataError
from echocare.jobs.finetune import run_finetune, scan_options, write_json
from echocare.metrics import label_efficiency_table, mean_std, plot_label_efficiency
from echocare.tasks.registry import get_task

logger = logging.getLogger(__name__)

__all__ = ["run_protocol"]


def run_protocol(cfg: FinetuneConfig, output_dir: str | Path, fractions: Sequence[float],
                 seeds: int | Sequence[int] = 20) -> dict[str, Any]:
    """Label efficiency x repeated seeds: one fine-tune run per (fraction, seed), then the summary.

    Runs live in ``OUT/frac-<pct>/seed-<s>``; finished runs (their metrics.json exists) are not rerun,
    so an interrupted protocol continues where it stopped. Writes ``OUT/protocol.md``, ``.csv``,
    ``.json`` and ``OUT/label_efficiency.png``.

    Returns:
        ``{"results": {fraction: {metric: [per-seed values]}}, "summary": ..., "files": [...]}``, or
        ``{"interrupted": True, "stop_signal", "run"}`` when a signal stopped one of the runs.
    """
    spec = get_task(cfg.task)
    out = Path(output_dir)
    seed_list = list(range(seeds)) if isinstance(seeds, int) else list(seeds)
    if not fractions or not seed_list:
        raise DataError("protocol needs at least one fraction and one seed")
    scanned = scan_dataset(spec.scan, cfg.data.root, scan_options(cfg), spec.name)
    results: dict[float, dict[str, list[float]]] = {}
    for frac in sorted(float(f) for f in fractions):
        for seed in seed_list:
            run_dir = out / f"frac-{frac * 100:g}" / f"seed-{seed}"
            done = run_dir / "metrics.json"
            if done.is_file():
                summary = json.loads(done.read_text())
                logger.info("protocol: reusing %s", run_dir)
            else:
                run_cfg = copy.deepcopy(cfg)
                run_cfg.data.train_fraction = frac
                run_cfg.train.seed = seed
                summary = run_finetune(run_cfg, run_dir, resume="auto", scanned=scanned)
                if summary.get("interrupted"):  # rerunning the protocol resumes this run
                    return {"interrupted": True, "stop_signal": summary.get("stop_signal"), "run": str(run_dir)}
            for name, value in summary.get("headline", {}).items():
                results.setdefault(frac, {}).setdefault(name, []).append(float(value))
    if not results:
        raise RuntimeError("protocol: no run produced validation metrics (is there a validation split?)")
    table = label_efficiency_table(results)
    png = plot_label_efficiency({cfg.model.init if cfg.model.init == "random" else Path(cfg.model.init).stem: results},
                                out / "label_efficiency.png", title=f"{cfg.task}: label efficiency")
    rows, summary_doc = [], {}
    for frac, per in sorted(results.items()):
        for name, values in sorted(per.items()):
            s = mean_std(values)
            summary_doc.setdefault(f"{frac:g}", {})[name] = {**s, "values": values}
            rows.append({"fraction": frac, "metric": name, "mean": s["mean"], "std": s["std"], "n": s["n"],
                         "lower_is_better": name in spec.lower_is_better})
    (out / "protocol.md").write_text(f"# {cfg.task}: label efficiency, {len(seed_list)} seeds (mean ± std)\n\n" + table)
    with (out / "protocol.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    write_json(out / "protocol.json", {"task": cfg.task, "seeds": seed_list, "summary": summary_doc})
    files = [str(out / n) for n in ("protocol.md", "protocol.csv", "protocol.json")] + [str(png)]
    return {"results": results, "summary": summary_doc, "files": files}
