#!/usr/bin/env python
"""Transfer benchmark: does pretraining pay off? One command, resumable, everything under --out.

Given an unlabeled image pool and a labeled downstream set (a folder with a ``labels.csv``: ``image`` plus ``mask``
for segmentation, ``hc_mm`` for HC regression, ``label`` for classification, optionally ``subject``; HC18's layout
is one, see bench/transfer_data.py):

1. split subjects (the ``subject`` column, or HC18's number before the first ``_``) into train/val/test,
   deterministically;
2. build shards (``echocare shards build``) from the pool minus every test subject's image;
3. pretrain with the recipe (echocare = L_MIM + L_HIE, kept with ``model.hie_min_labels=1`` even when the pool
   has one label) and its MIM-only ablation (``model.hie_weight=0``), export each encoder (``echocare pretrain``
   / ``echocare export``);
4. pretrain the peer, HF transformers ``SwinForMaskedImageModeling`` with the same architecture, shards,
   masks, steps, batch and lr schedule, and convert it with ``tools/convert_hf_swin.py``;
5. fine-tune from every init (random, echocare, echocare_mim, hf_simmim) for every task the set supports
   (``--tasks``: segmentation, HC regression, classification) at each label fraction and seed (``echocare
   finetune``, validation on the val subjects), and score on the test subjects (``echocare evaluate --data TEST`` + per-image scores for paired deltas);
6. write ``results.md`` (mean ± std, paired bootstrap deltas, gap closed with its seeds × images CI when there
   are seeds), ``results.json`` and ``label_efficiency_<task>.png``.

HC regression (``--hc-target px``, the default) regresses HC in pixels of the stored image and scores it in mm with
each image's pixel size, as HC18's own evaluation converts: the pixel size is not in the image, so mm from pixels
alone (``--hc-target mm``) is mostly a guess at the scanner's zoom (see bench/transfer_data.py).

``--head-init`` pretrains echocare with the segmentation head's own decoder (``model.decoder=unetr``) and starts
its segmentation heads from that decoder (``model.head_init=decoder``) instead of from random weights.

Finished steps are reused when the command is run again with the same settings (a different setting in the
same --out is an error). The echocare verbs run through ``echocare.cli.main``: in this process, or with
``--jobs N`` in N worker processes at once (the pretrainings together, then the fine-tuning cells; on one GPU the
small models leave it mostly idle, so several runs share it well; on a CPU the runs share the cores).

Examples::

    python bench/transfer.py --out runs/transfer                                   # the documented run
    python bench/transfer.py --out runs/transfer-smoke --steps 30 --ft-steps 20 --seeds 1 --fractions 1.0 \\
        --model echocare_swin_debug --limit-subjects 60                            # ~2 min smoke run
    python bench/transfer.py --out runs/busi --data BUSI_DIR --label thorax/breast/lesion --inits random,echocare_mim \\
        --pretrain-seeds 3 --ft-set optim.lr=1e-3 --jobs 2                         # your own set (labels.csv)
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import shlex
import sys
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Callable

import numpy as np

from transfer_settings import (  # bench/ is on sys.path: it holds this script (or the test that imports it)
    HC18_LABEL,
    TASKS,
    check_settings,
    default_label,
    per_task_arg,
    resolve_tasks,
    settings_of,
    task_value,
)

REPO = Path(__file__).resolve().parents[1]
INITS = ("random", "echocare", "echocare_mim", "hf_simmim")
logger = logging.getLogger("transfer")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--out", required=True, help="work and result folder (reused: finished runs are kept)")
    p.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "hc18_256"),
                   help="downstream set: a folder with labels.csv (see bench/transfer_data.py)")
    p.add_argument("--pool", default=None,
                   help="unlabeled pretraining images (default: --data/images, or the images of --data/labels.csv)")
    p.add_argument("--label", default=None,
                   help=f"ontology path of the pool images ('' = unlabeled; default: {HC18_LABEL} for a set with "
                        "hc_mm, else '')")
    p.add_argument("--recipe", default=str(REPO / "recipes" / "pretrain" / "small.yaml"), help="pretrain recipe")
    p.add_argument("--model", default="echocare_swin_nano", help="encoder (pretraining and random init)")
    p.add_argument("--img-size", type=int, default=64, help="pretraining and fine-tuning input side")
    p.add_argument("--steps", type=int, default=4000,
                   help="pretraining steps (echocare, MIM-only and HF peer): the small recipe's train.max_steps; "
                        "tables 1-8 of docs/results.md used 1000")
    p.add_argument("--batch", type=int, default=64,
                   help="pretraining batch: the small recipe's train.batch_size; tables 1-9 of docs/results.md used 32")
    p.add_argument("--ft-steps", type=per_task_arg, default="800",
                   help="fine-tuning steps per run: N, or TASK=N,... (on HC18 segmentation and HC regression need "
                        "~800 steps before 100%% of the labels pull ahead of 10%%; tables 1-7 of docs/results.md used "
                        "regression=200)")
    p.add_argument("--ft-eval-every", type=per_task_arg, default="100",
                   help="validate every N fine-tuning steps and keep the best weights (0 = the last weights); "
                        "N or TASK=N,...")
    p.add_argument("--ft-batch", type=int, default=16, help="fine-tuning batch")
    p.add_argument("--seg-feature-size", type=int, default=8,
                   help="segmentation head width (model.head.feature_size); the recipe's 32 is sized for Swin-B")
    p.add_argument("--seeds", type=int, default=3, help="fine-tuning seeds per cell")
    p.add_argument("--pretrain-seeds", type=int, default=1,
                   help="pretraining runs per pretrained init (train.seed + k); fine-tuning seed s starts from run "
                        "s mod K, so with K = --seeds the seed-averaged results and the seeds x images CI cover "
                        "the pretraining run's own randomness")
    p.add_argument("--head-init", action="store_true",
                   help="pretrain echocare / echocare_mim with the segmentation head's own decoder (model.decoder="
                        "unetr, model.decoder_dim=--seg-feature-size) and start their segmentation heads from it "
                        "(model.head_init=decoder); regression and the HF peer take the encoder only")
    p.add_argument("--fractions", default="0.1,1.0", help="label fractions (of training subjects)")
    p.add_argument("--tasks", default="auto",
                   help=f"some of {','.join(TASKS)}; auto = every task the labels.csv columns support")
    p.add_argument("--inits", default=",".join(INITS), help=",".join(INITS))
    p.add_argument("--hc-target", default="px", choices=("px", "mm"),
                   help="HC regression target: pixels of the stored image, scored in mm with each image's pixel size "
                        "(needs it in labels.csv), or mm as labelled (tables 1-7 of docs/results.md; the pixel "
                        "size, which is not in the image, then explains most of the target)")
    p.add_argument("--split", default="0.7,0.1,0.2", help="train,val,test subject fractions")
    p.add_argument("--split-seed", type=int, default=0)
    p.add_argument("--limit-subjects", type=int, default=None, help="use only the first N subjects (smoke runs)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="extra pretrain override")
    p.add_argument("--ft-set", action="append", default=[], metavar="KEY=VALUE", help="extra finetune override")
    p.add_argument("--precision", default="fp32", choices=("auto", "bf16", "fp32"),
                   help="train.precision of every run (fp32 on CPUs: their bf16 autocast is often emulated)")
    p.add_argument("--n-bootstrap", type=int, default=1000, help="bootstrap resamples per paired CI")
    p.add_argument("--jobs", type=int, default=1,
                   help="runs at once, each in its own process (1 = all in this process); results do not depend on it")
    args = p.parse_args(argv)
    if args.jobs < 1:
        p.error(f"--jobs must be >= 1, got {args.jobs}")
    if not 1 <= args.pretrain_seeds <= args.seeds:
        p.error(f"--pretrain-seeds must be in [1, --seeds={args.seeds}], got {args.pretrain_seeds}")
    return args


def _cli(argv: list[str], what: str) -> None:
    from echocare.cli import main

    logger.info("echocare %s", shlex.join(argv))
    code = main(argv)
    if code != 0:
        raise RuntimeError(f"{what}: `echocare {shlex.join(argv)}` exited with {code}")


def prepare(args: argparse.Namespace, out: Path) -> dict:
    """Split, downstream sets, pool and shards (each reused when done)."""
    from transfer_data import downstream_images, prepare_downstream, prepare_pool, write_manifest

    work = out / "data"
    work.mkdir(parents=True, exist_ok=True)
    split_path = work / "split.json"
    data = Path(args.data)
    if not split_path.is_file():
        fr = tuple(float(x) for x in args.split.split(","))
        split = prepare_downstream(data, work, fr, args.split_seed, args.limit_subjects)
        pool = Path(args.pool) if args.pool else data / "images"
        files = None
        if not args.pool and not pool.is_dir():  # no images/ folder: the images labels.csv names
            pool, files = data, downstream_images(data)
        same = pool.resolve() in ((data / "images").resolve(), data.resolve())
        keep = {s for part in split["subjects"].values() for s in part} if args.limit_subjects else None
        split["pool"] = prepare_pool(pool, work, set(split["images"]["test"]), set(split["subjects"]["test"]), same,
                                     keep, files=files, subjects=split.pop("image_subjects"))
        split_path.write_text(json.dumps(split, indent=1))
    split = json.loads(split_path.read_text())
    split.setdefault("tasks", ["segmentation", "regression"])  # (folders made before other sets were accepted:
    split.setdefault("subject_prefix", True)  # HC18's)
    shards = work / "shards"
    if not (shards / "index.json").is_file():
        manifest = write_manifest(work, args.label or None, args.img_size)
        _cli(["shards", "build", "--manifest", str(manifest), "--out", str(shards)], "shards")
    return split


def pretrain_overrides(args: argparse.Namespace, shards: Path) -> list[str]:
    """``--set`` overrides of every pretraining run (recipe + benchmark budget)."""
    return [f"data.shards={shards}", f"model.name={args.model}", f"model.img_size={args.img_size}",
            f"train.max_steps={args.steps}", f"train.batch_size={args.batch}", "train.progress=false",
            "train.tensorboard=false", "train.image_every=0", f"train.ckpt_every={args.steps}",
            f"train.precision={args.precision}",
            *(["model.decoder=unetr", f"model.decoder_dim={args.seg_feature_size}"] if args.head_init else []),
            *args.set]


def _pretrain_summary(run: Path) -> dict:
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if x.strip()]
    last = lines[-1] if lines else {}
    hie = [(d["step"], d["loss_hie"]) for d in lines if "loss_hie" in d]
    if not any(v > 0 for _, v in hie):
        return {"steps": last.get("step"), "loss_mim": last.get("loss_mim", last.get("loss")),
                "loss_hie": float("nan"), "hie_collapsed": "n/a (no L_HIE)"}
    collapsed = next((s for s, v in hie if v < 1e-3), None)
    return {"steps": last.get("step"), "loss_mim": last.get("loss_mim"), "loss_hie": last.get("loss_hie"),
            "hie_collapsed": f"yes, below 1e-3 at step {collapsed}" if collapsed is not None else "no"}


def pretrain_dir(out: Path, init: str, k: int) -> Path:
    """Run folder of pretraining run ``k`` of ``init``: ``pretrain/<init>`` for k = 0, ``<init>-seed<k>`` after."""
    return out / "pretrain" / (init if k == 0 else f"{init}-seed{k}")


def _pretrain_one(args: argparse.Namespace, out: Path, init: str, k: int = 0) -> Path:
    """Pretrain and export run ``k`` of one init (reused when its encoder exists); returns the encoder path.

    Run k > 0 adds k to the recipe's ``train.seed`` (masks, weights, data order)."""
    from echocare.config import PretrainConfig, load_config

    sets = pretrain_overrides(args, out / "data" / "shards")
    if k:
        sets.append(f"train.seed={load_config(PretrainConfig, args.recipe, sets).train.seed + k}")
    run = pretrain_dir(out, init, k)
    enc = run / "encoder.safetensors"
    if init == "hf_simmim":
        if not enc.is_file():
            from transfer_hf import pretrain_hf_peer

            pretrain_hf_peer(load_config(PretrainConfig, args.recipe, [*sets, "model.hie_weight=0"]), run)
        return enc
    if not enc.is_file():
        argv = ["pretrain", "--config", args.recipe, "--output-dir", str(run), "--resume", "auto"]
        # echocare measures L_MIM + L_HIE even on a one-label pool, where the recipe as written turns L_HIE off
        # (model.hie_min_labels): on such a pool that run is echocare_mim's
        per_init = {"echocare": ["model.hie_min_labels=1"], "echocare_mim": ["model.hie_weight=0"]}
        for s in [*sets, *per_init.get(init, [])]:
            argv += ["--set", s]
        _cli(argv, f"pretrain {init}")
        _cli(["export", str(run), "--out", str(enc)], f"export {init}")
    full = full_export(enc)
    if args.head_init and not full.is_file():  # encoder + decoder, for model.head_init=decoder
        _cli(["export", str(run), "--full", "--out", str(full)], f"export --full {init}")
    return enc


def full_export(encoder: Path) -> Path:
    """The ``--full`` export (encoder + pretraining decoder) next to a run's encoder export."""
    return encoder.with_name("full.safetensors")


def _worker_init(threads: int) -> None:
    """A worker process: the parent's log format, and its share of the cores (the trainer's thread sharing
    adjusts this further while it trains)."""
    import torch

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(threads)


def run_jobs(jobs: int, fn: Callable, calls: list[tuple]) -> list:
    """``[fn(*c) for c in calls]``, in ``jobs`` spawned processes when ``jobs > 1``. Every call runs even when
    one fails; the failures are raised together at the end."""
    if jobs <= 1 or len(calls) <= 1:
        return [fn(*c) for c in calls]
    results: list = [None] * len(calls)
    errors = []
    from echocare.engine.threads import available_cores

    threads = max(1, available_cores() // min(jobs, len(calls)))
    ctx = multiprocessing.get_context("spawn")  # never fork a process that may hold CUDA or OpenMP state
    with ProcessPoolExecutor(max_workers=min(jobs, len(calls)), mp_context=ctx, initializer=_worker_init,
                             initargs=(threads,)) as pool:
        futures = {pool.submit(fn, *c): i for i, c in enumerate(calls)}
        for fut in as_completed(futures):
            i = futures[fut]
            try:
                results[i] = fut.result()
            except Exception as err:  # noqa: BLE001 - collected and raised below
                logger.error("%s%s failed: %s", fn.__name__, calls[i][2:], err)
                errors.append(f"{calls[i][2:]}: {err}")
    if errors:
        raise RuntimeError(f"{len(errors)} of {len(calls)} runs failed: " + "; ".join(errors))
    return results


def pretrain_all(args: argparse.Namespace, out: Path, inits: list[str]) -> tuple[dict, dict]:
    """Pretrain + export every pretrained init, ``--pretrain-seeds`` runs each.

    Returns:
        ``({(init, k): encoder path}, {run name: loss summary})``; run names are ``init`` (k = 0) and
        ``init-seed<k>``.
    """
    todo = [(i, k) for i in ("echocare", "echocare_mim", "hf_simmim") if i in inits for k in range(args.pretrain_seeds)]
    paths = run_jobs(args.jobs, _pretrain_one, [(args, out, i, k) for i, k in todo])
    encoders = dict(zip(todo, paths))
    return encoders, {pretrain_dir(out, i, k).name: _pretrain_summary(pretrain_dir(out, i, k)) for i, k in todo}


def starts_head_from_decoder(args: argparse.Namespace, task: str, init: str) -> bool:
    """``--head-init``: the segmentation heads of echocare's inits start from their pretraining decoder."""
    return args.head_init and task == "segmentation" and init in ("echocare", "echocare_mim")


def finetune_overrides(args: argparse.Namespace, task: str, data: Path, init: str, frac: float, seed: int,
                       head_init: bool = False) -> list[str]:
    """``--set`` overrides of one fine-tuning run (``init``: the weights; ``head_init``: also the head's).

    Label fractions subsample subjects: the ``group`` column of the CSV sets, and for segmentation folders the
    HC18 name prefix (``data.group_regex``) where the split recorded it as the subject (``subject_prefix``), else
    images."""
    from echocare.config import PretrainConfig, load_config

    pcfg = load_config(PretrainConfig, args.recipe, pretrain_overrides(args, data / "shards"))
    steps = task_value(args.ft_steps, task)
    m = pcfg.model
    sets = [f"model.init={init}", f"model.name={m.name}", f"model.img_size={m.img_size}",
            f"model.patch_size={m.patch_size}", f"model.window_size={m.window_size}",
            f"data.train_fraction={frac}", "data.split_seed=0", f"train.seed={seed}",
            f"train.max_steps={steps}", f"train.batch_size={args.ft_batch}",
            f"train.eval_every={task_value(args.ft_eval_every, task)}", f"train.ckpt_every={steps}",
            "train.keep_last=1", "train.progress=false", "train.tensorboard=false", "optim.warmup_fraction=0.1",
            "data.num_workers=0", "eval.ci=false", f"train.precision={args.precision}"]
    if init == "random":
        for key in ("embed_dim", "depths", "num_heads"):
            if getattr(m, key, None) is not None:  # (fields absent from configs without model sizes)
                sets.append(f"model.{key}={json.dumps(getattr(m, key))}")
    if head_init:
        sets.append("model.head_init=decoder")
    if task == "segmentation":
        sets += [f"data.root={data / 'train'}", f"data.val_root={data / 'val'}", "data.num_classes=2",
                 f"model.head={json.dumps({'feature_size': args.seg_feature_size})}",
                 *(["data.group_regex=([^/_]+)_[^/]*$"] if _split_doc(data).get("subject_prefix", True) else [])]
    elif task == "classification":
        sets += [f"data.root={data / 'train' / 'labels.csv'}", f"data.val_root={data / 'val' / 'labels.csv'}",
                 "data.group_column=group"]
    else:
        sets += [f"data.root={data / 'train' / 'values.csv'}", f"data.val_root={data / 'val' / 'values.csv'}",
                 "data.path_column=image", f"data.value_columns=[hc_{args.hc_target}]", "data.group_column=group"]
    return [*sets, *args.ft_set]


def _split_doc(data: Path) -> dict:
    path = data / "split.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def _finetune_one(args: argparse.Namespace, out: Path, task: str, init: str, frac: float, seed: int,
                  weights: str) -> Path:
    """One (task, init, fraction, seed) cell: fine-tune, evaluate on test, per-image scores (reused when done)."""
    from transfer_data import mm_errors
    from transfer_report import per_image_scores

    data = out / "data"
    run = out / "finetune" / task / init / f"frac-{frac * 100:g}" / f"seed-{seed}"
    done = run / "test_result.json"
    if done.is_file():
        return done
    if not (run / "metrics.json").is_file():
        argv = ["finetune", "--config", str(REPO / "recipes" / "finetune" / f"{task}.yaml"),
                "--output-dir", str(run), "--resume", "auto"]
        for s in finetune_overrides(args, task, data, weights, frac, seed,
                                    starts_head_from_decoder(args, task, init)):
            argv += ["--set", s]
        _cli(argv, f"finetune {task} {init} {frac} {seed}")
    test = {"segmentation": data / "test", "classification": data / "test" / "labels.csv"}.get(
        task, data / "test" / "values.csv")
    _cli(["evaluate", "--checkpoint", str(run), "--data", str(test), "--out",
          str(run / "test_metrics.json"), "--set", "eval.ci=false"], f"evaluate {run}")
    headline = json.loads((run / "test_metrics.json").read_text())["headline"]
    scores = per_image_scores(run, task, data / "test")
    if task == "regression" and args.hc_target == "px":  # scored in mm, like the mm target
        scores = mm_errors(scores, data / "test" / "values.csv")
        err = np.asarray(list(scores.values()))
        headline = {"mae": float(err.mean()), "rmse": float(np.sqrt((err ** 2).mean())),
                    "mae_px": headline["mae"], "rmse_px": headline["rmse"]}
    done.write_text(json.dumps({"headline": headline, "per_image": scores}))
    return done


def finetune_all(args: argparse.Namespace, out: Path, encoders: dict, inits: list[str], tasks: list[str]) -> dict:
    """Every (task, init, fraction, seed) cell, ``--jobs`` at a time; returns ``{cell: test result}``."""
    fractions = [float(f) for f in args.fractions.split(",")]
    cells = []
    for task in tasks:
        cells += [(task, init, frac, seed) for init in inits for frac in fractions for seed in range(args.seeds)]
    def weights(init: str, seed: int) -> str:  # fine-tuning seed s starts from pretraining run s mod K
        return "random" if init == "random" else str(encoders[(init, seed % args.pretrain_seeds)])

    def source(task: str, init: str, seed: int) -> str:  # with --head-init, the export that also holds the decoder
        path = weights(init, seed)
        return str(full_export(Path(path))) if starts_head_from_decoder(args, task, init) else path

    calls = [(args, out, *c, source(c[0], c[1], c[3])) for c in cells]
    paths = run_jobs(args.jobs, _finetune_one, calls)
    return {c: json.loads(p.read_text()) for c, p in zip(cells, paths)}


def main(argv: list[str] | None = None) -> int:
    """Run (or resume) the benchmark; exit 2 on a user error."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    out = Path(args.out)
    inits = [i for i in args.inits.split(",") if i]
    try:
        unknown = [i for i in inits if i not in INITS]
        if unknown:
            raise ValueError(f"unknown init(s) {unknown}; choose from {', '.join(INITS)}")
        if args.label is None:
            args.label = default_label(Path(args.data))
        settings = settings_of(args)
        check_settings(out, settings)
        split = prepare(args, out)
        tasks = resolve_tasks(args, out, split["tasks"])
        (out / "settings.json").write_text(json.dumps(settings, indent=1))  # after the data checks passed
        encoders, pretrain_summary = pretrain_all(args, out, inits)
        runs = finetune_all(args, out, encoders, inits, tasks)
    except (FileNotFoundError, ValueError) as err:
        print(f"transfer: error: {err}", file=sys.stderr)
        return 2
    from transfer_report import build_report

    settings.update(command="python bench/transfer.py " + shlex.join(argv if argv is not None else sys.argv[1:]),
                    seeds=args.seeds, pretrain_seeds=args.pretrain_seeds, fractions=args.fractions, split=split)
    from transfer_data import baseline_sentences

    baselines = baseline_sentences(out / "data", tasks, args.hc_target)
    build_report(runs, settings, pretrain_summary, out, args.n_bootstrap, baselines)
    print(out / "results.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
