#!/usr/bin/env python
"""Benchmark one pretraining step: echocare vs HF ``SwinForMaskedImageModeling``, vs the GEMM peak, vs the trainer.

A step is forward + backward + AdamW step at batch ``--batch`` on a random SimMIM mask (32-px blocks,
ratio 0.5). Both models use the identical Swin (embed_dim, depths, heads, window, patch, image size,
channels, mlp ratio, drop path 0.1, encoder stride 32) and the SimMIM linear decoder with masked L1,
each at its library defaults, in fp32 and under bf16 autocast. FLOPs of one step are counted with
``torch.utils.flop_counter.FlopCounterMode``; achieved FLOP/s is compared with a same-run dense
``torch.mm`` of the same dtype. ``--trainer`` also runs echocare's ``Trainer`` for a few steps on
in-memory batches and compares its per-step throughput with the bare loop.

Examples::

    python bench/pretrain_step.py --model echocare_swin_tiny --img-size 128 --batch 8 --trainer
    python bench/pretrain_step.py --device cuda --model echocare_swin_base --img-size 256 --batch 32 --trainer
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import emit_report, machine_line  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="echocare_swin_tiny")
    p.add_argument("--img-size", type=int, default=128)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--patch-size", type=int, default=4)
    p.add_argument("--window-size", type=int, default=8)
    p.add_argument("--in-chans", type=int, default=1)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps per configuration")
    p.add_argument("--steps", type=int, default=5, help="timed steps per configuration")
    p.add_argument("--precisions", default="fp32,bf16", help="comma list of fp32, bf16")
    p.add_argument("--gemm-size", type=int, default=2048)
    p.add_argument("--trainer", action="store_true", help="also time echocare's Trainer (in-memory data)")
    p.add_argument("--skip-hf", action="store_true", help="do not run the HF transformers baseline")
    p.add_argument("--sdpa", action="store_true",
                   help="echocare with fused scaled_dot_product_attention in the window attention")
    p.add_argument("--compile", action="store_true", help="echocare wrapped in torch.compile")
    p.add_argument("--no-fused-adamw", action="store_true", help="AdamW's per-tensor loop (torch's CPU default)")
    p.add_argument("--profile", type=int, default=0, metavar="STEPS",
                   help="instead of timing: torch.profiler over STEPS echocare steps per precision, top ops table")
    p.add_argument("--top", type=int, default=15, help="rows of the --profile table")
    p.add_argument("--peak-tflops", default=None, metavar="fp32=X,bf16=Y",
                   help="datasheet dense peaks (TFLOP/s): adds an MFU column (achieved / datasheet peak)")
    p.add_argument("--out", type=Path, default=None, help="also write the markdown report here")
    p.add_argument("--trainer-only", default=None, help=argparse.SUPPRESS)  # internal: one precision, JSON out
    return p.parse_args(argv)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _autocast(device: torch.device, precision: str):
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def make_batch(args: argparse.Namespace, device: torch.device, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (B, C, H, W) in [0, 1] and a SimMIM token mask (B, H/p, W/p) of 32-px blocks, ratio 0.5."""
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(args.batch, args.in_chans, args.img_size, args.img_size, generator=g)
    block = max(1, 32 // args.patch_size)
    side = args.img_size // (block * args.patch_size)  # mask blocks per side
    n = side * side
    keep = torch.rand(args.batch, n, generator=g).argsort(1) < n // 2  # (B, n) True = masked
    mask = keep.view(args.batch, side, side).float()
    mask = mask.repeat_interleave(block, 1).repeat_interleave(block, 2)  # (B, H/p, W/p)
    return images.to(device), mask.to(device)


def build_ours(args: argparse.Namespace, device: torch.device) -> torch.nn.Module:
    """echocare pretraining model, SimMIM decoder, MIM loss only (no ontology), library defaults."""
    from echocare.models import create_model
    from echocare.models.encoder import set_fused_attention

    model = create_model(args.model, ontology=None, in_chans=args.in_chans, img_size=args.img_size,
                         patch_size=args.patch_size, window_size=args.window_size, decoder="simmim").to(device)
    if getattr(args, "sdpa", False):
        set_fused_attention(model, True)
    return torch.compile(model) if getattr(args, "compile", False) else model


def build_hf(args: argparse.Namespace, ours: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """HF ``SwinForMaskedImageModeling`` with the same Swin configuration as ``ours``."""
    from transformers import SwinConfig, SwinForMaskedImageModeling

    kw = ours.encoder.timm_kwargs
    cfg = SwinConfig(image_size=args.img_size, patch_size=args.patch_size, num_channels=args.in_chans,
                     embed_dim=kw["embed_dim"], depths=list(kw["depths"]), num_heads=list(kw["num_heads"]),
                     window_size=args.window_size, mlp_ratio=kw["mlp_ratio"], qkv_bias=kw["qkv_bias"],
                     drop_path_rate=0.1, encoder_stride=args.patch_size * 2 ** (len(kw["depths"]) - 1))
    return SwinForMaskedImageModeling(cfg).to(device)


def step_fns(ours, hf, images, mask) -> dict[str, tuple[torch.nn.Module, Callable[[], torch.Tensor]]]:
    """Loss closures of each implementation on the same batch."""
    fns = {"echocare": (ours, lambda: ours(images, mask, None)["loss"])}
    if hf is not None:
        bool_mask = mask.flatten(1).bool()  # (B, L) patch-level, L = (H/p)(W/p)
        fns["hf-transformers"] = (hf, lambda: hf(pixel_values=images, bool_masked_pos=bool_mask).loss)
    return fns


def time_steps(model, loss_fn, device, precision: str, warmup: int, steps: int,
               count_flops: bool = True) -> tuple[list[float], float]:
    """Per-step seconds of fwd+bwd+AdamW, and the FLOPs of one step (fwd+bwd)."""
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.05, fused=FUSED_ADAMW)  # as the trainer
    model.train()

    def one() -> None:
        with _autocast(device, precision):
            loss = loss_fn()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    for _ in range(warmup):
        one()
    times = []
    for _ in range(steps):
        _sync(device)
        t0 = time.perf_counter()
        one()
        _sync(device)
        times.append(time.perf_counter() - t0)
    if not count_flops:
        return times, float("nan")
    counter = FlopCounterMode(display=False)
    with counter, _autocast(device, precision):
        loss = loss_fn()
    with counter:
        loss.backward()
    opt.zero_grad(set_to_none=True)
    return times, float(counter.get_total_flops())


FUSED_ADAMW = True  # echocare.engine.optim.build_optimizer's default; --no-fused-adamw for the per-tensor loop


def gemm_peak(n: int, dtype: torch.dtype, device: torch.device, reps: int = 5) -> float:
    """FLOP/s of a dense n×n @ n×n matmul of ``dtype`` (best of ``reps``)."""
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(reps):
        _sync(device)
        t0 = time.perf_counter()
        torch.mm(a, b)
        _sync(device)
        best = min(best, time.perf_counter() - t0)
    return 2.0 * n ** 3 / best


def run_trainer(args: argparse.Namespace, precision: str, images, mask) -> list[float]:
    """echocare Trainer on in-memory batches; per-step img/s from its metrics.jsonl (log_every=1)."""
    from echocare.config import OptimConfig, TrainConfig
    from echocare.engine.trainer import Trainer
    from echocare.tasks.pretrain import PretrainTask

    total = args.warmup + args.steps
    train = TrainConfig(max_steps=total, batch_size=args.batch, precision=precision, log_every=1,
                        ckpt_every=10 * total, image_every=0, progress=False, tensorboard=False)
    optim = OptimConfig(warmup_steps=0)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(train, optim, tmp)
        device = trainer.device
        batch = {"image": images.to(device), "mask": mask.to(device), "key": [str(i) for i in range(args.batch)]}
        trainer.fit(PretrainTask(build_ours(args, device)), [batch])
        rows = [json.loads(line) for line in (Path(tmp) / "metrics.jsonl").read_text().splitlines()]
    return [r["img_per_s"] for r in rows if r["step"] > args.warmup]


def profile_report(args: argparse.Namespace, model, images, mask, device: torch.device) -> str:
    """torch.profiler over ``args.profile`` echocare steps per precision: the top ops by self time."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    sort = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    cmd = "python bench/pretrain_step.py " + " ".join(sys.argv[1:])
    lines = [f"`{cmd.strip()}`", "", machine_line(), ""]
    for precision in [p.strip() for p in args.precisions.split(",") if p.strip()]:
        time_steps(model, lambda: model(images, mask, None)["loss"], device, precision, args.warmup, 0,
                   count_flops=False)  # warm-up outside the profile
        with profile(activities=activities) as prof:
            time_steps(model, lambda: model(images, mask, None)["loss"], device, precision, 0, args.profile,
                       count_flops=False)
        events = sorted(prof.key_averages(), key=lambda e: getattr(e, sort), reverse=True)
        total = sum(getattr(e, sort) for e in events) or 1.0
        lines += [f"**{precision}**, {args.profile} steps, top {args.top} ops by self time "
                  f"(total self time {total / 1e3 / args.profile:.0f} ms per step):", "",
                  "| op | calls per step | self ms per step | % of self time |", "|---|---:|---:|---:|"]
        for e in events[: args.top]:
            t = getattr(e, sort)
            lines.append(f"| `{e.key}` | {e.count / args.profile:.0f} | {t / 1e3 / args.profile:.1f} | "
                         f"{100 * t / total:.1f} |")
        gemm = sum(getattr(e, sort) for e in events if e.key in GEMM_OPS)
        lines += ["", f"GEMM-like ops (mm, addmm, bmm, SDPA kernels, convolutions): {100 * gemm / total:.1f} % of "
                  "self time", ""]
    return "\n".join(lines)


GEMM_OPS = {"aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::_scaled_dot_product_flash_attention_for_cpu",
            "aten::_scaled_dot_product_flash_attention_for_cpu_backward", "aten::convolution_backward",
            "aten::mkldnn_convolution", "aten::_scaled_dot_product_efficient_attention",
            "aten::_flash_attention_forward", "aten::_flash_attention_backward", "aten::_efficient_attention_backward"}


def _fmt(x: float, nd: int = 1) -> str:
    return f"{x:.{nd}f}"


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print (and optionally write) a markdown report."""
    args = parse_args(argv)
    global FUSED_ADAMW
    FUSED_ADAMW = not args.no_fused_adamw
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    images, mask = make_batch(args, device)
    if args.trainer_only:  # bare loop and trainer back to back in one fresh process: same conditions
        model = build_ours(args, device)
        times, _ = time_steps(model, lambda: model(images, mask, None)["loss"], device, args.trainer_only,
                              args.warmup, args.steps, count_flops=False)
        del model
        trainer_ips = run_trainer(args, args.trainer_only, images.cpu(), mask.cpu())
        print(json.dumps({"trainer": trainer_ips, "bare": [args.batch / t for t in times]}))
        return 0
    ours = build_ours(args, device)
    if args.profile:
        report = profile_report(args, ours, images, mask, device)
        print(report)
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(report + "\n")
        return 0
    hf = None if args.skip_hf else build_hf(args, getattr(ours, "_orig_mod", ours), device)
    params = {name: sum(p.numel() for p in m.parameters()) for name, (m, _) in step_fns(ours, hf, images, mask).items()}
    precisions = [p.strip() for p in args.precisions.split(",") if p.strip()]
    peaks = {p: gemm_peak(args.gemm_size, torch.float32 if p == "fp32" else torch.bfloat16, device)
             for p in precisions}

    rows = []
    for precision in precisions:
        for name, (model, fn) in step_fns(ours, hf, images, mask).items():
            try:
                times, flops = time_steps(model, fn, device, precision, args.warmup, args.steps)
            except RuntimeError as err:  # report, keep benchmarking the others
                rows.append({"impl": name, "precision": precision, "error": str(err).splitlines()[0][:120]})
                continue
            med = statistics.median(times)
            rows.append({"impl": name, "precision": precision, "ms": 1e3 * med, "img_s": args.batch / med,
                         "gflop": flops / 1e9, "tflops": flops / med / 1e12, "peak": peaks[precision] / 1e12})
    trainer_rows = []
    if args.trainer:  # one subprocess per precision: accelerate's state is a per-process singleton
        argv_now = list(argv if argv is not None else sys.argv[1:])
        for precision in precisions:
            proc = subprocess.run([sys.executable, __file__, *argv_now, "--trainer-only", precision],
                                  capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                raise RuntimeError(f"trainer run ({precision}) failed:\n{proc.stderr[-3000:]}")
            res = json.loads(proc.stdout.strip().splitlines()[-1])
            trainer_rows.append((precision, statistics.median(res["trainer"]), statistics.median(res["bare"])))

    cmd = "python bench/pretrain_step.py " + " ".join(argv if argv is not None else sys.argv[1:])
    lines = [
        f"`{cmd.strip()}`",
        "",
        machine_line(),
        "",
        "% of peak = achieved / same-run dense mm of the same dtype; MFU = achieved / datasheet peak "
        "(--peak-tflops; – when not given). echocare options: "
        f"sdpa={args.sdpa}, compile={args.compile}, fused AdamW={FUSED_ADAMW}.",
        "",
        f"device `{device}` ({torch.cuda.get_device_name(device) if device.type == 'cuda' else 'CPU'}), "
        f"torch {torch.__version__}, threads {torch.get_num_threads()}, model `{args.model}` "
        f"(params: {', '.join(f'{k} {v / 1e6:.2f} M' for k, v in params.items())}), img {args.img_size}, "
        f"batch {args.batch}, patch {args.patch_size}, window {args.window_size}, in_chans {args.in_chans}; "
        f"median of {args.steps} steps after {args.warmup} warm-up",
        "",
        "| impl | precision | step ms | img/s | GFLOP/step | achieved TFLOP/s | mm peak TFLOP/s | % of peak | MFU |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    datasheet = {k.strip(): float(v) for k, v in (kv.split("=") for kv in args.peak_tflops.split(","))} \
        if args.peak_tflops else {}
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['impl']} | {r['precision']} | failed: {r['error']} | | | | | | |")
            continue
        lines.append(f"| {r['impl']} | {r['precision']} | {_fmt(r['ms'])} | {_fmt(r['img_s'], 2)} | "
                     f"{_fmt(r['gflop'])} | {_fmt(r['tflops'], 3)} | {_fmt(r['peak'], 3)} | "
                     f"{_fmt(100 * r['tflops'] / r['peak'])} | "
                     f"{_fmt(100 * r['tflops'] / datasheet[r['precision']]) + ' %' if r['precision'] in datasheet else '–'} |")
    for precision in precisions:
        by = {r["impl"]: r for r in rows if r["precision"] == precision and "error" not in r}
        if "echocare" in by and "hf-transformers" in by:
            lines.append(f"\necho/HF {precision}: **{by['echocare']['img_s'] / by['hf-transformers']['img_s']:.2f}x** "
                         f"(goal: fp32 >= 1.1x, bf16 >= 2x); echocare {precision} at "
                         f"{100 * by['echocare']['tflops'] / by['echocare']['peak']:.0f} % of same-run GEMM "
                         "(goal: fp32 >= 40 %, bf16 >= 25 %)")
    if trainer_rows:
        lines += ["", "Trainer (in-memory batches, log_every=1, clip 5.0, per-step img/s from metrics.jsonl) vs the "
                  "bare loop, both in one fresh process per precision, back to back:", "",
                  "| precision | trainer img/s | bare img/s | trainer / bare |", "|---|---:|---:|---:|"]
        for precision, t_ips, b_ips in trainer_rows:
            lines.append(f"| {precision} | {_fmt(t_ips, 2)} | {_fmt(b_ips, 2)} | {_fmt(t_ips / b_ips, 2)} |")
    emit_report(lines, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
