"""Benchmark: echocare shard stream vs torchvision ImageFolder + PIL transforms (decode + augment + mask).

Both pipelines read the same N phantom-like 256x256 grayscale PNGs (written here to a temp dir as a
class-folder tree and as webdataset shards), apply the EchoCare pretraining augmentations (random
resized crop p=0.5 else centre crop, h/v flips p=0.5, brightness/contrast jitter p=0.2), resize to
256, convert to a float tensor and draw a SimMIM mask (32-px blocks, ratio 0.5, patch 4). Throughput is
images/s per worker with one torch thread, for num_workers=0 (in-process) and num_workers=1.

Shards are written once per ``--formats`` entry (png = the ImageFolder's own bytes; raw-zstd = lossless
``.npy.zst``); a decode-only micro-benchmark reports per-image decode time and size per format.

Run:  python bench/data_pipeline.py --n 1000 --out bench/results/data_pipeline.md
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torchvision
import torchvision.transforms as T
import webdataset as wds
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision.datasets import ImageFolder

from echocare.data.loader import PretrainStream, make_pretrain_loader
from echocare.data.shardcheck import decode_gray
from echocare.data.writer import encode_image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import machine_line  # noqa: E402

SIZE, PATCH, MASK_PATCH, RATIO = 256, 4, 32, 0.5


def phantom(rng: np.random.Generator, size: int = SIZE) -> np.ndarray:
    """Sector-shaped B-mode-like image: smooth tissue pattern x Rayleigh speckle, black outside the fan."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    cx, cy = size / 2, -size * 0.1
    r, theta = np.hypot(x - cx, y - cy), np.arctan2(x - cx, y - cy)
    f1, f2, ph = rng.uniform(8, 30), rng.uniform(8, 30), rng.uniform(0, 6.28)
    tissue = 90 + 50 * np.sin(r / f1 + ph) * np.cos(theta * f2 / 4)
    blob = np.exp(-((x - rng.uniform(60, 200)) ** 2 + (y - rng.uniform(80, 220)) ** 2) / (2 * rng.uniform(10, 30) ** 2))
    img = (tissue * (1 - 0.8 * blob)) * rng.rayleigh(0.8, size=(size, size)).astype(np.float32)
    fan = (np.abs(theta) < 0.7) & (r > size * 0.15) & (r < size * 1.05)
    return np.clip(img * fan, 0, 255).astype(np.uint8)


def write_data(root: Path, n: int, formats: list[str], seed: int = 0) -> tuple[Path, dict[str, Path], list[np.ndarray]]:
    """Write the same images as an ImageFolder tree of PNGs (2 classes) and as shards + index.json per format."""
    rng = np.random.default_rng(seed)
    folder = root / "folder"
    images = [phantom(rng) for _ in range(n)]
    per_shard, counts = 250, {"a": 0, "b": 0}
    for i, img in enumerate(images):
        cls = "ab"[i % 2]
        (folder / cls).mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(folder / cls / f"img{i:05d}.png")
        counts[cls] += 1
    shard_dirs = {}
    for fmt in formats:
        shards = root / f"shards-{fmt}"
        shards.mkdir(parents=True)
        entries, writer = [], None
        for i, img in enumerate(images):
            cls = "ab"[i % 2]
            if i % per_shard == 0:
                if writer is not None:
                    writer.close()
                name = f"shard-{i // per_shard:06d}.tar"
                writer = wds.TarWriter(str(shards / name))
                entries.append({"name": name, "count": min(per_shard, n - i)})
            if fmt == "png":  # the very bytes the ImageFolder reads
                data, ext = (folder / cls / f"img{i:05d}.png").read_bytes(), "png"
            else:
                data, ext = encode_image(img, fmt)
            meta = {"dataset": cls, "source": f"img{i:05d}", "frame": None, "paths": [], "label_space": None,
                    "metadata": {}}
            writer.write({"__key__": f"{cls}/img{i:05d}", ext: data, "json": json.dumps(meta).encode()})
        writer.close()
        (shards / "index.json").write_text(json.dumps({"version": 1, "shards": entries, "datasets": counts,
                                                       "total": n, "image_size": SIZE}))
        shard_dirs[fmt] = shards
    return folder, shard_dirs, images


def decode_costs(images: list[np.ndarray], formats: list[str], rounds: int = 5) -> dict[str, dict[str, float]]:
    """Per-image decode time (``decode_gray``) and encoded size per format, all formats timed in one loop
    (round-robin), so their ratio holds even on a busy machine."""
    encoded = {f: [encode_image(img, f)[0] for img in images[:200]] for f in formats}
    for f in formats:  # lossless check while we are here
        if f != "jpeg" and not all(np.array_equal(decode_gray(b).numpy(), a) for b, a in zip(encoded[f], images)):
            raise RuntimeError(f"{f} did not round-trip exactly")
    spent = dict.fromkeys(formats, 0.0)
    for _ in range(rounds):
        for f in formats:
            t0 = time.perf_counter()
            for b in encoded[f]:
                decode_gray(b)
            spent[f] += time.perf_counter() - t0
    n = rounds * len(encoded[formats[0]])
    return {f: {"us": 1e6 * spent[f] / n, "kib": float(np.mean([len(b) for b in encoded[f]])) / 1024} for f in formats}


class NumpyMask:
    """SimMIM's reference mask generator (numpy), one mask per sample."""

    def __init__(self) -> None:
        self.rand = SIZE // MASK_PATCH
        self.scale = MASK_PATCH // PATCH
        self.count = int(np.ceil(self.rand ** 2 * RATIO))

    def __call__(self) -> np.ndarray:
        idx = np.random.permutation(self.rand ** 2)[: self.count]
        mask = np.zeros(self.rand ** 2, dtype=int)
        mask[idx] = 1
        return mask.reshape(self.rand, self.rand).repeat(self.scale, axis=0).repeat(self.scale, axis=1)


class BaselineDataset(Dataset):
    """torchvision ImageFolder + PIL transforms + numpy mask, the usual SimMIM-style pipeline."""

    def __init__(self, root: Path, grayscale: bool) -> None:
        loader = (lambda p: Image.open(p).convert("L")) if grayscale else torchvision.datasets.folder.pil_loader
        self.folder = ImageFolder(str(root), loader=loader)
        self.transform = T.Compose([
            T.RandomApply([T.RandomResizedCrop(SIZE, scale=(0.67, 1.0))], p=0.5),
            T.Resize(SIZE), T.CenterCrop(SIZE),
            T.RandomHorizontalFlip(), T.RandomVerticalFlip(),
            T.RandomApply([T.ColorJitter(0.2, 0.2)], p=0.2),
            T.ToTensor(),
        ])
        self.mask = NumpyMask()

    def __len__(self) -> int:
        return len(self.folder)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, np.ndarray]:
        img, _ = self.folder[i]
        return self.transform(img), self.mask()


def _cpu_seconds() -> tuple[float, float]:
    """(CPU time of this process, CPU time of its finished children = DataLoader workers)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime, kids.ru_utime + kids.ru_stime


def timed(make_batches, n_expected: int) -> dict[str, float]:
    """Images/s: wall clock after the first batch (steady state, no worker start-up), wall clock for the
    whole pass, and per CPU-second (all processes; robust to other jobs sharing the machine)."""
    (own0, kids0), start = _cpu_seconds(), time.perf_counter()
    batches = iter(make_batches())
    first_t, first_n, n = None, 0, 0
    for batch in batches:
        b = len(batch["key"]) if isinstance(batch, dict) else batch[0].shape[0]
        n += b
        if first_t is None:
            first_t, first_n = time.perf_counter(), b
    end = time.perf_counter()
    del batches  # joins the workers so their CPU time is accounted
    own1, kids1 = _cpu_seconds()
    if n != n_expected:
        raise RuntimeError(f"pipeline yielded {n} images, expected {n_expected}")
    kids = kids1 - kids0
    return {"total": n / (end - start), "steady": (n - first_n) / max(end - first_t, 1e-9),
            "cpu": n / (own1 - own0 + kids), "worker_cpu": n / kids if kids > 0.01 else 0.0}


def run(args: argparse.Namespace) -> str:
    torch.set_num_threads(1)
    formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        folder, shard_dirs, images = write_data(Path(tmp), args.n, formats)
        costs = decode_costs(images, formats)
        rows = []
        for workers in (0, 1):
            best: dict[str, dict[str, float]] = {}
            for _ in range(args.repeats):
                results = {}
                for fmt, shards in shard_dirs.items():
                    ds = PretrainStream(str(shards), img_size=SIZE, patch_size=PATCH, mask_patch_size=MASK_PATCH,
                                        mask_ratio=RATIO, shuffle_buffer=args.shuffle_buffer, seed=0)
                    results[f"echocare shards ({fmt})"] = timed(
                        lambda: make_pretrain_loader(ds, args.batch_size, workers), args.n)
                for gray in (False, True):
                    label = "ImageFolder + PIL, " + ("grayscale loader (L)" if gray else "default loader (RGB)")
                    results[label] = timed(lambda: DataLoader(BaselineDataset(folder, gray), batch_size=args.batch_size,
                                                              shuffle=True, num_workers=workers), args.n)
                for k, v in results.items():
                    best[k] = {m: max(v[m], best.get(k, {}).get(m, 0.0)) for m in v}
            gray = best["ImageFolder + PIL, grayscale loader (L)"]
            for k, v in best.items():
                worker_cpu = f"{v['worker_cpu']:.0f}" if workers else "–"
                rows.append(f"| {workers} | {k} | {v['cpu']:.0f} | {worker_cpu} | {v['steady']:.0f} | "
                            f"{v['total']:.0f} | {v['cpu'] / gray['cpu']:.2f}x | {v['steady'] / gray['steady']:.2f}x |")
    png = costs.get("png")
    decode_rows = [f"| {f} | {c['us']:.0f} | {c['us'] / png['us']:.2f}x | {c['kib']:.1f} | {c['kib'] / png['kib']:.2f}x |"
                   if png else f"| {f} | {c['us']:.0f} | – | {c['kib']:.1f} | – |" for f, c in costs.items()]
    lines = [
        "Decode only (`decode_gray`, 256² phantom, 200 images x 5 rounds, formats round-robin in one loop):", "",
        "| format | µs per image | vs PNG | KiB per image | size vs PNG |", "|---|---:|---:|---:|---:|",
        *decode_rows, "",
        "Whole pipeline (decode + augment + mask + batch); ratios against ImageFolder with the grayscale loader "
        "(goal: >= 2x per worker):", "",
        "| num_workers | pipeline | img per CPU-s (all processes) | img per worker CPU-s | img/s wall (steady) | "
        "img/s wall (incl. start-up) | vs grayscale ImageFolder (CPU) | (wall) |",
        "|---|---|---|---|---|---|---|---|", *rows,
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1000, help="number of images")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=2, help="best of R passes per pipeline")
    parser.add_argument("--shuffle-buffer", type=int, default=1000)
    parser.add_argument("--formats", default="png,raw-zstd", help="shard sample formats: png, raw-zstd, jpeg")
    parser.add_argument("--workdir", default=None, help="where the temp data goes (default: system temp)")
    parser.add_argument("--out", default=None, help="append the table to this markdown file")
    args = parser.parse_args()
    table = run(args)
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    header = (f"\n### {stamp}\n\n`python bench/data_pipeline.py {' '.join(sys.argv[1:])}`\n\n{machine_line()}; "
              f"torchvision {torchvision.__version__}, N={args.n}, batch {args.batch_size}, 1 torch thread\n\n")
    print(header + table)
    if args.out:
        with open(args.out, "a") as f:
            f.write(header + table + "\n")


if __name__ == "__main__":
    main()
