#!/usr/bin/env python
"""Benchmark: how fast does fine-tuning run per loader-worker count, on a small and a larger labeled set?

Each configuration is ``python -m echocare finetune --config recipes/finetune/segmentation.yaml`` for ``--steps``
steps, alone, in its own subprocess and run directory, on a segmentation set of ``N`` HC18 images (``images/`` +
binarised ``masks/``, written to a temp dir from ``--data``), with ``data.num_workers`` overridden and the model
and input size of ``--set`` (default: the transfer benchmark's ``echocare_swin_nano`` at 64 px, batch 16). No
validation runs (``train.eval_every=0``, ``data.val_fraction=0.05``). Throughput is images / wall-seconds over the
``metrics.jsonl`` windows after the first, so a set of N images at batch B restarts its loader (and its worker
processes) every N / B steps inside the measured windows, as a real fine-tune does.

Run:  python bench/finetune_speed.py --workers 0,1,2 --n-images 80,560 --out bench/results/finetune_speed.md
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from contention import train_alone  # noqa: E402
from machine import emit_report, machine_line  # noqa: E402
from transfer_data import binary_mask, read_downstream  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SETS = ["model.name=echocare_swin_nano", "model.img_size=64", "train.batch_size=16",
                'model.head={"feature_size": 8}']


def _ints(text: str, name: str, low: int) -> list[int]:
    try:
        values = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--{name}: expected a comma list of integers, got {text!r}") from None
    if not values or any(v < low for v in values):
        raise argparse.ArgumentTypeError(f"--{name}: values must be >= {low}, got {text!r}")
    return values


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "hc18_256",
                   help="HC18-layout set (images/, masks/ 0/255, labels.csv)")
    p.add_argument("--workers", type=lambda t: _ints(t, "workers", 0), default=[0, 1, 2],
                   help="comma list of data.num_workers")
    p.add_argument("--n-images", type=lambda t: _ints(t, "n-images", 20), default=[80, 560],
                   help="comma list of training-set sizes")
    p.add_argument("--steps", type=int, default=120, help="training steps per configuration")
    p.add_argument("--log-every", type=int, default=10)
    p.add_argument("--set", action="append", default=[],
                   help=f"--set key=value for every run (default: {DEFAULT_SETS})")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    if not (args.data / "labels.csv").is_file():
        p.error(f"--data: no labels.csv in {args.data}")
    args.set = args.set or DEFAULT_SETS
    return args


def write_set(data: Path, out: Path, n: int) -> Path:
    """A segmentation folder of the first ``n`` labeled images of ``data`` (masks binarised to class ids 0/1)."""
    rows = read_downstream(data)[0][:n]
    if len(rows) < n:
        raise ValueError(f"{data} has {len(rows)} labeled images, fewer than {n}")
    for sub in ("images", "masks"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    for r in rows:
        name = Path(r["image"]).name
        (out / "images" / name).write_bytes((data / r["image"]).read_bytes())
        Image.fromarray(binary_mask(data / r["mask"])).save(out / "masks" / name)
    return out


def run_one(root: Path, out: Path, workers: int, args: argparse.Namespace) -> float:
    """Fine-tune ``--steps`` steps alone with ``workers`` loader workers; return img/s."""
    sets = [f"data.root={root}", "data.val_fraction=0.05", *args.set, f"data.num_workers={workers}",
            f"train.max_steps={args.steps}", f"train.log_every={args.log_every}", f"train.ckpt_every={args.steps}",
            "train.eval_every=0", "train.progress=false", "train.tensorboard=false", "eval.ci=false"]
    recipe = ROOT / "recipes" / "finetune" / "segmentation.yaml"
    return train_alone("finetune", recipe, out, sets)


def main(argv: list[str] | None = None) -> int:
    """Run every configuration and print (and optionally write) a markdown report."""
    args = parse_args(argv)
    header = machine_line()
    speed: dict[tuple[int, int], float] = {}
    with tempfile.TemporaryDirectory(prefix="echocare-finetune-speed-") as tmp:
        for n in args.n_images:
            root = write_set(args.data, Path(tmp) / f"set-{n}", n)
            for w in args.workers:
                speed[(n, w)] = run_one(root, Path(tmp) / f"run-{n}-w{w}", w, args)
    cmd = "python bench/finetune_speed.py " + " ".join(argv if argv is not None else sys.argv[1:])
    lines = [f"`{cmd.strip()}`", "", header, "",
             f"`recipes/finetune/segmentation.yaml` with {' '.join(args.set)}; {args.steps} steps per configuration, "
             f"each alone; img/s after the first {args.log_every}-step window", "",
             "| labeled images (5% held out) | data.num_workers | img/s | vs 0 workers on the same set |",
             "|---:|---:|---:|---:|"]
    for (n, w), v in speed.items():
        ref = speed.get((n, 0))
        lines.append(f"| {n} | {w} | {v:.1f} | {f'{v / ref:.2f}x' if ref else '–'} |")
    emit_report(lines, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
