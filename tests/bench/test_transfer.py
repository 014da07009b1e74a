"""bench/transfer.py smoke run on a handful of HC18 subjects: outputs exist and agree (not their values)."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
HC18 = REPO.parent / "shared" / "data" / "hc18_256"
ARGS = ["--steps", "3", "--batch", "4", "--ft-steps", "2", "--ft-batch", "4", "--seeds", "1", "--fractions", "0.5,1.0",
        "--model", "echocare_swin_debug", "--img-size", "64", "--limit-subjects", "6", "--n-bootstrap", "20",
        "--inits", "random,echocare,hf_simmim", "--split", "0.5,0.17,0.33", "--data", str(HC18)]


def _run(out: Path, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(REPO / "bench" / "transfer.py"), "--out", str(out), *ARGS, *extra],
                          capture_output=True, text=True, env=env, cwd=REPO, timeout=600)


@pytest.mark.skipif(not (HC18 / "labels.csv").is_file(), reason="HC18 data not present at ../shared/data/hc18_256")
def test_transfer_smoke_outputs_consistent_and_resumable(tmp_path):
    out = tmp_path / "bench"
    proc = _run(out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name in ("results.md", "results.json", "label_efficiency_segmentation.png", "label_efficiency_regression.png"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name

    split = json.loads((out / "data" / "split.json").read_text())
    subjects = split["subjects"]
    assert sum(len(v) for v in subjects.values()) == 6
    assert not set(subjects["train"]) & set(subjects["test"]) and not set(subjects["val"]) & set(subjects["test"])
    test_images = set(split["images"]["test"])
    pool = {p.name for p in (out / "data" / "pool").rglob("*.png")}
    assert pool and not pool & test_images  # test images never reach pretraining
    assert {n.split("_")[0] for n in pool} <= set(subjects["train"]) | set(subjects["val"])

    doc = json.loads((out / "results.json").read_text())
    assert set(doc["tasks"]) == {"segmentation", "regression"}
    for task, tdoc in doc["tasks"].items():
        assert set(tdoc["cells"]) == {"random", "echocare", "hf_simmim"}
        assert all(set(c) == {"0.5", "1"} for c in tdoc["cells"].values())
        # 2 inits vs random + echocare vs hf_simmim, at two fractions; paired on every test image
        assert len(tdoc["deltas"]) == 6 and {d["n_images"] for d in tdoc["deltas"]} == {len(test_images)}
        assert all(d["ci_low"] <= d["delta"] <= d["ci_high"] for d in tdoc["deltas"])
        assert set(tdoc["gap_closed"]) == {"echocare", "hf_simmim"}
        for init in ("random", "echocare", "hf_simmim"):
            run = out / "finetune" / task / init / "frac-50" / "seed-0"
            result = json.loads((run / "test_result.json").read_text())
            assert set(result["per_image"]) == test_images
            evaluated = json.loads((run / "test_metrics.json").read_text())
            assert evaluated["n_items"] == len(test_images)
            if task == "segmentation":
                assert evaluated["headline"] == result["headline"]
            else:  # HC regressed in pixels (evaluate's units), reported in mm
                assert evaluated["headline"]["mae"] == result["headline"]["mae_px"]
            headline = "mean_dice" if task == "segmentation" else "mae"
            assert tdoc["cells"][init]["0.5"][headline]["values"] == [result["headline"][headline]]
            if task == "regression":  # the per-image absolute errors average to evaluate's MAE
                mean = sum(result["per_image"].values()) / len(test_images)
                assert mean == pytest.approx(result["headline"]["mae"], rel=1e-4)
    assert set(doc["pretraining"]) == {"echocare", "hf_simmim"}
    peer_lines = (out / "pretrain" / "hf_simmim" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in peer_lines] == [3]  # the last step is always logged
    md = (out / "results.md").read_text()
    assert "echocare − random" in md and "Gap closed" in md and "## Pretraining" in md
    assert "Predicting the training mean of hc_px for every test image: MAE" in md
    assert doc["tasks"]["regression"]["baseline"].startswith("Predicting the training mean")

    stamp = (out / "finetune" / "segmentation" / "echocare" / "frac-100" / "seed-0" / "test_result.json").stat().st_mtime_ns
    again = _run(out, "--jobs", "2")  # resumable: finished runs are reused (also by spawned workers), report rewritten
    assert again.returncode == 0, again.stderr[-3000:]
    assert "echocare finetune" not in again.stderr and "echocare pretrain" not in again.stderr
    assert (out / "finetune" / "segmentation" / "echocare" / "frac-100" / "seed-0" /
            "test_result.json").stat().st_mtime_ns == stamp
    changed = _run(out, "--steps", "4")
    assert changed.returncode == 2 and "other settings" in changed.stderr


@pytest.mark.skipif(not (HC18 / "labels.csv").is_file(), reason="HC18 data not present at ../shared/data/hc18_256")
def test_hc_in_pixels_is_scored_in_mm_with_each_images_pixel_size(tmp_path):
    out = tmp_path / "px"
    proc = _run(out, "--tasks", "regression", "--inits", "random", "--fractions", "1.0")  # --hc-target px
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = out / "finetune" / "regression" / "random" / "frac-100" / "seed-0"
    assert "value_columns:\n  - hc_px" in (run / "config.yaml").read_text()
    result = json.loads((run / "test_result.json").read_text())
    evaluated = json.loads((run / "test_metrics.json").read_text())  # evaluate scores the target: pixels
    rows = (out / "data" / "test" / "values.csv").read_text().splitlines()[1:]
    scale = {r.split(",")[0].split("/")[-1]: float(r.split(",")[4]) for r in rows}
    px = [err / scale[name] for name, err in result["per_image"].items()]
    assert sum(px) / len(px) == pytest.approx(evaluated["headline"]["mae"], rel=1e-4) == result["headline"]["mae_px"]
    mm = list(result["per_image"].values())
    assert result["headline"]["mae"] == pytest.approx(sum(mm) / len(mm))
    assert json.loads((out / "settings.json").read_text())["hc_target"] == "px"
    mm = _run(out.with_name("mm"), "--tasks", "regression", "--inits", "random", "--fractions", "1.0",
              "--hc-target", "mm")  # as labelled: evaluate's units are mm already
    assert mm.returncode == 0, mm.stderr[-3000:]
    run = out.with_name("mm") / "finetune" / "regression" / "random" / "frac-100" / "seed-0"
    assert "value_columns:\n  - hc_mm" in (run / "config.yaml").read_text()
    result = json.loads((run / "test_result.json").read_text())
    assert json.loads((run / "test_metrics.json").read_text())["headline"] == result["headline"]
    assert "hc_target" not in json.loads((out.with_name("mm") / "settings.json").read_text())

    labels = tmp_path / "nosize" / "labels.csv"  # a set without pixel sizes: one line, exit 2
    labels.parent.mkdir()
    for sub in ("images", "masks"):
        (labels.parent / sub).symlink_to(HC18 / sub)
    lines = (HC18 / "labels.csv").read_text().splitlines()
    labels.write_text("\n".join(",".join(x.split(",")[i] for i in (0, 1, 3)) for x in lines) + "\n")
    bad = _run(tmp_path / "bad", "--tasks", "regression", "--inits", "random", "--hc-target", "px",
               "--data", str(labels.parent))
    assert bad.returncode == 2 and "--hc-target px needs pixel sizes" in bad.stderr.splitlines()[-1]


@pytest.mark.skipif(not (HC18 / "labels.csv").is_file(), reason="HC18 data not present at ../shared/data/hc18_256")
def test_classification_on_a_set_of_class_folders(tmp_path):
    """Another set than HC18: class folders and a labels.csv ``image,label`` (here HC18 images, two made-up classes),
    no images/ folder: classification is the task it supports, its images are the pretraining pool."""
    data = tmp_path / "lesions"
    lines = ["image,label"]
    for i, row in enumerate((HC18 / "labels.csv").read_text().splitlines()[1:60]):
        label = ("cyst", "solid")[i % 2]
        name = Path(row.split(",")[0]).name
        (data / label).mkdir(parents=True, exist_ok=True)
        (data / label / name).symlink_to(HC18 / "images" / name)
        lines.append(f"{label}/{name},{label}")
    (data / "labels.csv").write_text("\n".join(lines) + "\n")
    out = tmp_path / "bench"
    args = ["--data", str(data), "--inits", "random,echocare_mim", "--limit-subjects", "12"]
    proc = _run(out, *args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads((out / "settings.json").read_text())["label"] == ""  # not HC18: an unlabeled pool
    split = json.loads((out / "data" / "split.json").read_text())
    assert split["tasks"] == ["classification"]
    pool = {p.name for p in (out / "data" / "pool").rglob("*.png")}
    assert pool and not pool & set(split["images"]["test"])
    assert pool == set(split["images"]["train"]) | set(split["images"]["val"])
    doc = json.loads((out / "results.json").read_text())
    assert set(doc["tasks"]) == {"classification"}
    tdoc = doc["tasks"]["classification"]
    assert set(tdoc["cells"]) == {"random", "echocare_mim"} and tdoc["per_image_metric"] == "correct"
    for init in ("random", "echocare_mim"):
        run = out / "finetune" / "classification" / init / "frac-100" / "seed-0"
        result = json.loads((run / "test_result.json").read_text())
        evaluated = json.loads((run / "test_metrics.json").read_text())
        assert set(result["per_image"]) == set(split["images"]["test"])
        assert set(result["per_image"].values()) <= {0.0, 1.0}  # right or wrong, averaging to evaluate's accuracy
        mean = sum(result["per_image"].values()) / len(result["per_image"])
        assert mean == pytest.approx(evaluated["headline"]["accuracy"]) == result["headline"]["accuracy"]
    md = (out / "results.md").read_text()
    assert "## classification" in md and "macro_f1" in md and "most frequent class" in md
    assert (out / "label_efficiency_classification.png").stat().st_size > 0
    wrong = _run(tmp_path / "bench2", *args, "--tasks", "segmentation")
    assert wrong.returncode == 2 and "has no labels for segmentation" in wrong.stderr.splitlines()[-1]


def _bench_module(name: str = "transfer"):
    """Import one of the bench scripts' modules (bench/ is not a package) without leaving bench/ on sys.path."""
    sys.path.insert(0, str(REPO / "bench"))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(REPO / "bench"))


def test_run_jobs_spawns_workers_keeps_order_and_collects_failures(monkeypatch):
    monkeypatch.syspath_prepend(str(REPO / "bench"))  # as when run as a script: workers import the module
    run_jobs = _bench_module().run_jobs
    assert run_jobs(1, divmod, [(7, 2), (9, 4)]) == [(3, 1), (2, 1)]  # in this process
    pids = run_jobs(2, os.getpid, [(), (), ()])
    assert len(pids) == 3 and os.getpid() not in pids  # every call in a worker process
    assert run_jobs(2, divmod, [(7, 2), (9, 4), (5, 5)]) == [(3, 1), (2, 1), (1, 0)]
    with pytest.raises(RuntimeError, match="1 of 3 runs failed"):
        run_jobs(2, divmod, [(7, 2), (1, 0), (5, 5)])  # the other two still ran


def test_fine_tuning_budgets_per_task():
    transfer = _bench_module()
    args = transfer.parse_args(["--out", "x"])
    assert transfer.task_value(args.ft_steps, "segmentation") == 800
    assert transfer.task_value(args.ft_steps, "regression") == 800
    assert args.hc_target == "px"
    from echocare.config import PretrainConfig, load_config

    recipe = load_config(PretrainConfig, args.recipe, ["data.shards=x"])  # the benchmark measures the recipe's budget
    assert (args.steps, args.batch, args.img_size, args.model) == (recipe.train.max_steps, recipe.train.batch_size,
                                                                  recipe.model.img_size, recipe.model.name)
    args = transfer.parse_args(["--out", "x", "--ft-steps", "30", "--ft-eval-every", "segmentation=5,regression=0"])
    assert [transfer.task_value(args.ft_steps, t) for t in transfer.TASKS] == [30, 30, 30]
    assert [transfer.task_value(args.ft_eval_every, t) for t in ("segmentation", "regression")] == [5, 0]
    with pytest.raises(ValueError, match="no value for classification"):
        transfer.task_value(args.ft_eval_every, "classification")
    for bad in ("lots", "segmentation=1,regression=x", "detection=5"):
        with pytest.raises(SystemExit):
            transfer.parse_args(["--out", "x", "--ft-steps", bad])
    settings = _bench_module("transfer_settings")  # a folder made with per-task budgets stays reusable
    assert settings._same_setting("ft_steps", "segmentation=800,regression=800", "800")
    assert not settings._same_setting("ft_steps", "segmentation=800,regression=200", "800")
    assert not settings._same_setting("steps", "800", "segmentation=800,regression=800")


def test_paired_delta_ci_over_seeds_covers_seed_to_seed_spread():
    module = _bench_module("transfer_report")
    paired_delta, paired_delta_seeds = module.paired_delta, module.paired_delta_seeds
    names = [f"img{i}" for i in range(50)]
    ref = {n: [0.0, 0.0] for n in names}
    # Seed 0 gains +1 on every image, seed 1 loses 1: the seed-averaged difference is 0 on every image, so
    # the images-only CI collapses to 0 while the seeds x images CI spans the seeds' disagreement.
    swing = {n: [1.0, -1.0] for n in names}
    d = paired_delta(swing, ref, 200)
    assert d["delta"] == 0 and d["ci_low"] == d["ci_high"] == 0
    lo, hi = paired_delta_seeds(swing, ref, 200)
    assert lo == pytest.approx(-1.0) and hi == pytest.approx(1.0)
    steady = {n: [0.5, 0.5] for n in names}  # the same gain under every seed: no spread to cover
    assert paired_delta_seeds(steady, ref, 200) == pytest.approx((0.5, 0.5))
    assert paired_delta_seeds({n: [0.5] for n in names}, {n: [0.0] for n in names}, 200) is None  # one seed


def test_hf_peer_names_the_model_settings_it_cannot_follow():
    unapplied_model_keys = _bench_module("transfer_hf").unapplied_model_keys
    from echocare.config import PretrainConfig, load_config

    plain = load_config(PretrainConfig, REPO / "recipes" / "pretrain" / "small.yaml", ["data.shards=x"])
    assert unapplied_model_keys(plain.model) == {}
    odd = load_config(PretrainConfig, REPO / "recipes" / "pretrain" / "small.yaml",
                      ["data.shards=x", "model.decoder=unetr", "model.decoder_dim=8", "model.decoder_output=linear",
                       "model.target_norm_patch=8", "model.weight_init=timm"])
    sigmoid = load_config(PretrainConfig, REPO / "recipes" / "pretrain" / "small.yaml",
                          ["data.shards=x", "model.decoder_output=sigmoid"])
    assert unapplied_model_keys(sigmoid.model) == {"decoder_output": "sigmoid"}
    assert unapplied_model_keys(odd.model) == {"decoder": "unetr", "decoder_dim": 8, "target_norm_patch": 8,
                                               "weight_init": "timm"}


def test_gap_closed_at_every_fraction_below_the_full_set():
    gap_closed = _bench_module("transfer_report").gap_closed
    random = {0.05: 0.80, 0.1: 0.88, 1.0: 0.94}
    gaps = gap_closed(random, {0.05: 0.86, 0.1: 0.89, 1.0: 0.93})
    assert list(gaps) == [0.05, 0.1]  # (none at the full set itself)
    assert gaps[0.05] == pytest.approx(0.06 / 0.14) and gaps[0.1] == pytest.approx(0.01 / 0.06)
    assert list(gap_closed(random, {0.1: 0.9})) == [0.1]  # only where the init has runs
    assert np.isnan(gap_closed({0.1: 0.9, 1.0: 0.9}, {0.1: 0.95})[0.1])  # no gap to close


def test_gap_closed_ci_resamples_seeds_and_images_together():
    gap_closed_ci = _bench_module("transfer_report").gap_closed_ci
    names = [f"img{i}" for i in range(40)]
    low = {n: [0.80, 0.80] for n in names}
    full = {n: [0.90, 0.90] for n in names}
    # An init that lands on random@full on every image and seed closes the whole gap in every resample.
    assert gap_closed_ci(low, full, {n: [0.90, 0.90] for n in names}, 200) == pytest.approx((1.0, 1.0))
    # Seed 0 closes the whole gap, seed 1 none: the point estimate is 0.5 and the CI spans the two seeds.
    lo, hi = gap_closed_ci(low, full, {n: [0.90, 0.80] for n in names}, 400)
    assert lo == pytest.approx(0.0) and hi == pytest.approx(1.0)
    # Image-level noise with a steady seed effect: a CI around 0.5 that excludes 0 and 1.
    rng = np.random.default_rng(0)
    noisy = {n: [0.85 + e, 0.85 + e] for n, e in zip(names, rng.normal(0, 0.01, len(names)))}
    lo, hi = gap_closed_ci(low, full, noisy, 400)
    assert 0.0 < lo < 0.5 < hi < 1.0
    assert gap_closed_ci({n: [0.8] for n in names}, {n: [0.9] for n in names}, {n: [0.85] for n in names}, 50) is None


def test_report_brackets_the_gap_closed_with_its_ci_only_when_there_are_seeds(tmp_path):
    build_report = _bench_module("transfer_report").build_report
    names = [f"img{i}" for i in range(20)]
    scores = {("random", 0.1): 0.80, ("random", 1.0): 0.90, ("echocare", 0.1): 0.86, ("echocare", 1.0): 0.90}

    def report(seeds: int, out: Path, noise: float = 0.0, scores: dict = scores) -> tuple[str, dict]:
        wobble = {n: noise * (-1) ** i for i, n in enumerate(names)}  # per-image noise, mean 0
        runs = {("segmentation", init, frac, s): {"headline": {"mean_dice": v + 0.01 * s},
                                                 "per_image": {n: v + 0.01 * s + wobble[n] * (frac < 1)
                                                               for n in names}}
                for (init, frac), v in scores.items() for s in range(seeds)}
        settings = {"command": "x", "seeds": seeds, "fractions": "0.1,1.0",
                    "split": {"n": {"test": len(names)}, "subjects": {"test": names}}}
        out.mkdir()
        doc = build_report(runs, settings, {}, out, n_bootstrap=50)
        return (out / "results.md").read_text(), doc["tasks"]["segmentation"]

    md, tdoc = report(1, tmp_path / "one")
    assert "- echocare (L_MIM + L_HIE): 0.60\n" in md and "gap_closed_ci_seeds" not in tdoc
    assert "ci_seeds_low" not in tdoc["random_gap"]  # one seed: only the CI over test images
    md, tdoc = report(2, tmp_path / "two")
    lo, hi = tdoc["gap_closed_ci_seeds"]["echocare"]["0.1"]
    assert lo <= tdoc["gap_closed"]["echocare"] <= hi
    assert f"- echocare (L_MIM + L_HIE): 0.60 [{lo:.2f}, {hi:.2f}]" in md and "over seeds × test images;" in md
    assert "own gap, random@100% − random@10% per test image: +0.1000, 95% CI [+0.1000, +0.1000]." in md
    assert tdoc["random_gap"]["delta"] == pytest.approx(0.1)

    flat = {**scores, ("random", 1.0): 0.80}  # random init has no label gap: the ratio divides by noise
    md, tdoc = report(2, tmp_path / "flat", noise=0.05, scores=flat)
    assert "it spans 0, so the ratio divides by noise." in md
    assert tdoc["random_gap"]["ci_seeds_low"] <= 0 <= tdoc["random_gap"]["ci_seeds_high"]


@pytest.mark.skipif(not (HC18 / "labels.csv").is_file(), reason="HC18 data not present at ../shared/data/hc18_256")
def test_pretrain_seeds_give_each_finetuning_seed_its_own_pretraining_run(tmp_path):
    out = tmp_path / "bench"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    args = [*ARGS, "--seeds", "2", "--pretrain-seeds", "2", "--fractions", "1.0", "--tasks", "regression",
            "--inits", "random,echocare"]
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "transfer.py"), "--out", str(out), *args],
                          capture_output=True, text=True, env=env, cwd=REPO, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = [out / "pretrain" / "echocare", out / "pretrain" / "echocare-seed1"]
    seeds = [yaml.safe_load((r / "config.yaml").read_text())["train"]["seed"] for r in runs]
    assert seeds[1] == seeds[0] + 1
    assert (runs[0] / "encoder.safetensors").read_bytes() != (runs[1] / "encoder.safetensors").read_bytes()
    cells = out / "finetune" / "regression" / "echocare" / "frac-100"
    inits = [yaml.safe_load((cells / f"seed-{s}" / "config.yaml").read_text())["model"]["init"] for s in (0, 1)]
    assert inits == [str(r / "encoder.safetensors") for r in runs]
    doc = json.loads((out / "results.json").read_text())
    assert set(doc["pretraining"]) == {"echocare", "echocare-seed1"}
    (delta,) = doc["tasks"]["regression"]["deltas"]
    assert delta["ci_seeds_low"] <= delta["delta"] <= delta["ci_seeds_high"]
    assert "pretraining run 1" in (out / "results.md").read_text()
    bad = subprocess.run([sys.executable, str(REPO / "bench" / "transfer.py"), "--out", str(tmp_path / "x"), *ARGS,
                          "--pretrain-seeds", "2"], capture_output=True, text=True, env=env, cwd=REPO, timeout=60)
    assert bad.returncode == 2 and "--pretrain-seeds must be in [1, --seeds=1]" in bad.stderr


@pytest.mark.skipif(not (HC18 / "labels.csv").is_file(), reason="HC18 data not present at ../shared/data/hc18_256")
def test_head_init_pretrains_the_heads_decoder_and_starts_echocare_segmentation_from_it(tmp_path):
    out = tmp_path / "bench"
    proc = _run(out, "--fractions", "1.0", "--tasks", "segmentation", "--inits", "random,echocare", "--head-init")
    assert proc.returncode == 0, proc.stderr[-3000:]
    pre = yaml.safe_load((out / "pretrain" / "echocare" / "config.yaml").read_text())["model"]
    assert (pre["decoder"], pre["decoder_dim"]) == ("unetr", 8)  # 8 = --seg-feature-size
    cells = out / "finetune" / "segmentation"
    echo = yaml.safe_load((cells / "echocare" / "frac-100" / "seed-0" / "config.yaml").read_text())["model"]
    assert echo["init"] == str(out / "pretrain" / "echocare" / "full.safetensors") and echo["head_init"] == "decoder"
    rand = yaml.safe_load((cells / "random" / "frac-100" / "seed-0" / "config.yaml").read_text())["model"]
    assert (rand["init"], rand["head_init"]) == ("random", "random")
    assert json.loads((out / "settings.json").read_text())["head_init"] is True


def test_segmentation_label_fractions_take_subjects_from_names_only_where_names_carry_them(tmp_path):
    transfer = _bench_module()
    args = transfer.parse_args(["--out", str(tmp_path)])
    data = tmp_path / "data"
    data.mkdir()

    def seg_sets(split_doc: dict | None) -> list[str]:
        if split_doc is not None:
            (data / "split.json").write_text(json.dumps(split_doc))
        return transfer.finetune_overrides(args, "segmentation", data, "random", 0.1, 0)

    regex = "data.group_regex=([^/_]+)_[^/]*$"
    assert regex in seg_sets(None)  # a folder made before the key: HC18
    assert regex in seg_sets({"subject_prefix": True})
    assert not any(s.startswith("data.group_regex") for s in seg_sets({"subject_prefix": False}))
    cls = transfer.finetune_overrides(args, "classification", data, "random", 0.1, 0)
    assert f"data.root={data / 'train' / 'labels.csv'}" in cls and "data.group_column=group" in cls


def test_every_task_to_run_needs_a_fine_tuning_budget(tmp_path):
    transfer = _bench_module()
    args = transfer.parse_args(["--out", str(tmp_path), "--ft-steps", "segmentation=5,regression=5",
                                "--tasks", "segmentation,classification"])
    with pytest.raises(ValueError, match="--ft-steps: 'segmentation=5,regression=5' gives no value for "
                                         "classification; give N for every task, or classification=N too"):
        transfer.resolve_tasks(args, tmp_path, ["segmentation", "classification"])
    args.tasks = "auto"
    args.ft_steps = "5"
    assert transfer.resolve_tasks(args, tmp_path, ["segmentation", "classification"]) == ["segmentation",
                                                                                           "classification"]
    args.tasks = "regression"
    with pytest.raises(ValueError, match="has no labels for regression"):
        transfer.resolve_tasks(args, tmp_path, ["segmentation", "classification"])
