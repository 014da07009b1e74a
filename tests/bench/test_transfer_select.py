"""bench/transfer_select.py: each init's fine-tuning setting is chosen on validation, never on test."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
IMAGES = [f"{i}_HC.png" for i in range(4)]


def _write_run(root: Path, ft_set: list[str], cells: dict) -> Path:
    """A finished bench/transfer.py --out folder, in the files it writes, with the given regression cells.

    ``cells``: ``{(init, fraction, seed): (best validation MAE, per-image test errors in mm)}``.
    """
    settings = {"data": "hc18", "split_seed": 0, "hc_target": "px", "steps": 1000, "ft_set": ft_set}
    split = {"n": {"test": len(IMAGES)}, "subjects": {"test": [n.split("_")[0] for n in IMAGES]}}
    root.mkdir()
    (root / "settings.json").write_text(json.dumps(settings))
    results = {"settings": {**settings, "command": f"python bench/transfer.py --out {root.name}", "seeds": 2,
                            "pretrain_seeds": 1, "fractions": "0.1,1.0", "split": split},
               "pretraining": {"echocare": {"steps": 1000, "loss_mim": 0.09, "loss_hie": 1e-5}}}
    (root / "results.json").write_text(json.dumps(results))
    for part, rows in (("train", [(100, 0.2), (140, 0.2)]), ("test", [(110, 0.1)] * len(IMAGES))):
        (root / "data" / part).mkdir(parents=True)
        lines = ["image,hc_px,mm_per_px", *(f"x.png,{hc},{mm}" for hc, mm in rows)]
        (root / "data" / part / "values.csv").write_text("\n".join(lines) + "\n")
    for (init, frac, seed), (val, errors) in cells.items():
        run = root / "finetune" / "regression" / init / f"frac-{frac * 100:g}" / f"seed-{seed}"
        run.mkdir(parents=True)
        (run / "metrics.json").write_text(json.dumps({"split": "val", "selected_on": "mae", "best_value": val}))
        per_image = dict(zip(IMAGES, errors))
        mae = sum(errors) / len(errors)
        (run / "test_result.json").write_text(json.dumps({"headline": {"mae": mae, "rmse": mae},
                                                          "per_image": per_image}))
    return root


def _select(out: Path, *runs: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(REPO / "bench" / "transfer_select.py"), "--out", str(out),
                           "--n-bootstrap", "50", *map(str, runs)], capture_output=True, text=True, env=env, cwd=REPO,
                          timeout=300)


def test_each_init_gets_the_setting_that_validates_best_and_test_scores_play_no_part(tmp_path):
    low, high = [10.0] * 4, [30.0] * 4
    a = _write_run(tmp_path / "lr-recipe", [], {
        ("random", 0.1, 0): (50.0, low), ("random", 0.1, 1): (52.0, low),      # val 51: best for random@10%
        ("random", 1.0, 0): (40.0, low), ("random", 1.0, 1): (40.0, low),      # val 40: tie, named first wins
        ("echocare", 0.1, 0): (60.0, low), ("echocare", 0.1, 1): (60.0, low),  # best on test, worse on val
        ("echocare", 1.0, 0): (45.0, low), ("echocare", 1.0, 1): (45.0, low),
    })
    b = _write_run(tmp_path / "lr-high", ["optim.lr=1e-3"], {
        ("random", 0.1, 0): (53.0, high), ("random", 0.1, 1): (51.0, high),    # val 52
        ("random", 1.0, 0): (40.0, high), ("random", 1.0, 1): (40.0, high),
        ("echocare", 0.1, 0): (49.0, high), ("echocare", 0.1, 1): (50.0, high),  # val 49.5: chosen
        ("echocare", 1.0, 0): (30.0, high),                                    # seed 1 missing: not a candidate
    })
    out = tmp_path / "select"
    proc = _select(out, a, b)
    assert proc.returncode == 0, proc.stderr[-3000:]

    doc = json.loads((out / "results.json").read_text())
    cells = doc["tasks"]["regression"]["cells"]
    assert cells["random"]["0.1"]["mae"]["values"] == [10.0, 10.0]   # run a
    assert cells["random"]["1"]["mae"]["values"] == [10.0, 10.0]     # tie: run a
    assert cells["echocare"]["0.1"]["mae"]["values"] == [30.0, 30.0]  # run b, although a's test errors are lower
    assert cells["echocare"]["1"]["mae"]["values"] == [10.0, 10.0]   # run a: b lacks seed 1
    chosen = {(r["init"], r["fraction"]): r["run"] for r in doc["selection"] if r["chosen"]}
    assert chosen == {("random", 0.1): "(recipe)", ("random", 1.0): "(recipe)",
                      ("echocare", 0.1): "optim.lr=1e-3", ("echocare", 1.0): "(recipe)"}
    val = {(r["init"], r["fraction"], r["run"]): r["val"] for r in doc["selection"]}
    assert val[("random", 0.1, "optim.lr=1e-3")] == 52.0 and ("echocare", 1.0, "optim.lr=1e-3") not in val
    # the report's deltas and gap are computed from the chosen cells: echocare@10% 30 mm vs random@10% 10 mm
    delta = next(d for d in doc["tasks"]["regression"]["deltas"] if d["a"] == "echocare" and d["fraction"] == 0.1)
    assert delta["delta"] == 20.0
    md = (out / "results.md").read_text()
    assert "## Fine-tuning setting chosen on validation" in md and "python bench/transfer.py --out lr-high" in md
    assert "Fewer candidates than the others (tuned less): echocare (L_MIM + L_HIE)." in md
    assert "Predicting the training mean of hc_px for every test image: MAE 1.0000 mm" in md  # |110-120| × 0.1


def test_runs_that_differ_in_more_than_ft_set_or_lack_validation_are_refused(tmp_path):
    cell = {("random", 1.0, 0): (40.0, [1.0] * 4)}
    a = _write_run(tmp_path / "a", [], cell)
    same = _write_run(tmp_path / "same", [], cell)
    proc = _select(tmp_path / "out", a, same)
    assert proc.returncode == 2 and "two runs have the same --ft-set" in proc.stderr

    other = _write_run(tmp_path / "other", ["optim.lr=1e-3"], cell)
    settings = json.loads((other / "settings.json").read_text())
    (other / "settings.json").write_text(json.dumps({**settings, "steps": 4000}))
    proc = _select(tmp_path / "out", a, other)
    assert proc.returncode == 2 and "differ in more than --ft-set" in proc.stderr and "steps" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1

    no_val = _write_run(tmp_path / "no-val", ["optim.lr=3e-4"], cell)
    metrics = no_val / "finetune" / "regression" / "random" / "frac-100" / "seed-0" / "metrics.json"
    metrics.write_text(json.dumps({"split": "train", "best_value": None}))
    proc = _select(tmp_path / "out", a, no_val)
    assert proc.returncode == 2 and "no periodic validation" in proc.stderr

    other_metric = _write_run(tmp_path / "other-metric", ["optim.lr=1e-4"], cell)
    metrics = other_metric / "finetune" / "regression" / "random" / "frac-100" / "seed-0" / "metrics.json"
    metrics.write_text(json.dumps({"split": "val", "selected_on": "rmse", "best_value": 30.0}))
    proc = _select(tmp_path / "out", a, other_metric)
    assert proc.returncode == 2 and "not on the headline mae" in proc.stderr

    seed1 = _write_run(tmp_path / "seed1", ["optim.lr=2e-4"], {("random", 1.0, 1): (40.0, [1.0] * 4)})
    proc = _select(tmp_path / "out", a, seed1)  # a has seed 0 only, seed1 seed 1 only: nothing to compare
    assert proc.returncode == 2 and "no run holds every seed [0, 1] of regression random at 100% labels" in proc.stderr

    proc = _select(tmp_path / "out", a, tmp_path / "missing")
    assert proc.returncode == 2 and "finished bench/transfer.py --out folder" in proc.stderr
