"""The HF SimMIM peer of the transfer benchmark: ``SwinForMaskedImageModeling`` pretrained on the same shards
with the same steps, batch, lr schedule, masks and augmentation as echocare, then converted to an echocare export
by ``tools/convert_hf_swin.py``.

The loop reuses echocare's pretraining loader (images + SimMIM token masks; ``bool_masked_pos`` = the token
mask flattened) and schedule helpers, so the only differences from ``echocare pretrain`` with
``model.hie_weight=0 model.decoder=simmim`` are the model implementation and its linear SimMIM decoder.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import math
from pathlib import Path

import torch

logger = logging.getLogger("transfer.hf")

TOOL = Path(__file__).resolve().parents[1] / "tools" / "convert_hf_swin.py"


def _converter():
    spec = importlib.util.spec_from_file_location("convert_hf_swin", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def hf_config(cfg) -> "transformers.SwinConfig":  # noqa: F821 - lazy import
    """HF ``SwinConfig`` with the architecture of an echocare ``PretrainConfig`` (resolved named size)."""
    from transformers import SwinConfig

    from echocare.models.registry import ENCODER_SPECS, resolve_model_name

    m = cfg.model
    spec = ENCODER_SPECS[resolve_model_name(m.name)]
    depths = list(getattr(m, "depths", None) or spec.depths)
    return SwinConfig(
        image_size=m.img_size, patch_size=m.patch_size, num_channels=m.in_chans,
        embed_dim=getattr(m, "embed_dim", None) or spec.embed_dim, depths=depths,
        num_heads=list(getattr(m, "num_heads", None) or spec.num_heads),
        window_size=m.window_size, drop_path_rate=m.drop_path_rate, hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0, encoder_stride=m.patch_size * 2 ** (len(depths) - 1),
    )


def clip_hf_windows(model) -> int:
    """Give every HF Swin layer whose grid is smaller than the window an attention sized for the clipped window.

    transformers 5.x builds each layer's relative-position table for ``config.window_size`` but clips the window
    to the grid at run time (``set_shift_and_window_size``), so a stage whose grid is smaller than the window
    fails with a shape error. Rebuilding the attention of those layers for the clipped window is what
    transformers 4.x did at construction, and what timm does (the converted tables then have timm's shapes).

    Returns:
        The number of layers rebuilt.
    """
    from transformers.models.swin.modeling_swin import SwinAttention

    rebuilt = 0
    for stage in model.swin.encoder.layers:
        for layer in stage.blocks:
            res = min(layer.input_resolution)
            if res < layer.window_size:
                attn = layer.attention
                layer.attention = SwinAttention(model.config, attn.head_dim * attn.num_attention_heads,
                                                attn.num_attention_heads, window_size=res)
                if hasattr(model, "_init_weights"):  # HF's own initialisation (normal 0.02), as for every other layer
                    layer.attention.apply(model._init_weights)
                layer.set_shift_and_window_size(layer.input_resolution)
                rebuilt += 1
    return rebuilt


# echocare model keys the peer cannot follow, with the values it matches (hie_weight: the benchmark always passes
# 0 for the peer; its head is linear and its init is what echocare calls "normal")
UNUSED_MODEL_KEYS = {"decoder": "simmim", "decoder_dim": None, "decoder_output": "linear", "target_norm_patch": 0,
                     "weight_init": "normal"}


def unapplied_model_keys(model_cfg) -> dict:
    """The ``model.*`` settings of an echocare ``ModelConfig`` that the peer cannot follow (set away from plain
    SimMIM), ``{key: value}``."""
    return {k: getattr(model_cfg, k) for k, plain in UNUSED_MODEL_KEYS.items() if getattr(model_cfg, k) != plain}


def pretrain_hf_peer(cfg, out_dir: Path, log_every: int = 10) -> Path:
    """Pretrain the HF SimMIM peer with ``cfg``'s data, optimizer and schedule; write ``out_dir/encoder.safetensors``.

    Args:
        cfg: the echocare ``PretrainConfig`` of the benchmark recipe (its ``model.hie_weight`` and the keys of
            :data:`UNUSED_MODEL_KEYS` are not used: the peer is plain SimMIM by construction; set ones are logged).
        out_dir: run folder (``hf_model/`` = HF ``save_pretrained``, ``metrics.jsonl``, ``encoder.safetensors``).
        log_every: steps between metrics lines.

    Returns:
        The converted encoder export.
    """
    from echocare.engine.thread_share import join_thread_share
    from echocare.engine.threads import configure_threads

    ignored = unapplied_model_keys(cfg.model)
    if ignored:  # e.g. --set model.target_norm_patch=8 or --head-init: echocare's runs have them, the peer not
        logger.warning("HF peer: plain SimMIM (linear head, raw-pixel targets); not applied: %s",
                       ", ".join(f"model.{k}={v}" for k, v in ignored.items()))
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.train.seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    plan = configure_threads(accelerator=device.type != "cpu")  # the rule echocare's trainer follows
    share = join_thread_share(plan, cfg.train.share_threads, device.type != "cpu")  # as Trainer.fit does
    try:
        return _pretrain(cfg, out_dir, log_every, device, share)
    finally:
        if share is not None:
            share.close()


def _pretrain(cfg, out_dir: Path, log_every: int, device: torch.device,
              share: "ThreadShare | None") -> Path:  # noqa: F821 - lazy import
    """The peer's loop (see :func:`pretrain_hf_peer`); ``share`` is polled every step."""
    from transformers import SwinForMaskedImageModeling

    from echocare.config.derived import derive_schedule
    from echocare.engine.distributed import resolve_precision
    from echocare.engine.optim import build_optimizer, build_param_groups
    from echocare.jobs.pretrain import build_pretrain_loader

    mixed = resolve_precision(cfg.train.precision, device.type)  # the same rule as echocare's trainer
    if mixed == "fp16":
        raise ValueError("HF peer: train.precision=fp16 is not supported here; use auto, bf16 or fp32")
    model = SwinForMaskedImageModeling(hf_config(cfg))
    if clip_hf_windows(model):
        logger.info("HF peer: attention of the stages smaller than the window rebuilt for the clipped window")
    model = model.to(device)
    model.train()
    sched = derive_schedule(cfg.train, cfg.optim, world_size=1)
    groups = build_param_groups(model, cfg.optim.weight_decay)
    opt = build_optimizer(groups, sched.peak_lr, cfg.optim.betas, cfg.optim.eps)
    loader = build_pretrain_loader(cfg, None, rank=0, world_size=1)
    with (out_dir / "metrics.jsonl").open("w") as metrics:  # a line per log step, flushed: progress shows
        step, last = _loop(model, opt, loader, sched, cfg, device, mixed, share, metrics, log_every)
    model.cpu().save_pretrained(out_dir / "hf_model")
    logger.info("HF peer: %d steps, last loss %.4f", step, last)
    return _converter().convert_hf_swin(out_dir / "hf_model", out_dir / "encoder.safetensors")


def _loop(model, opt, loader, sched, cfg, device: torch.device, mixed: str, share, metrics,
          log_every: int) -> tuple[int, float]:
    """Train ``sched.total_steps`` steps; append ``{"step", "loss", "lr"}`` to ``metrics`` every ``log_every``.

    Returns:
        ``(steps done, last loss)``.
    """
    from echocare.engine.schedule import lr_factor

    step, last = 0, float("nan")
    while step < sched.total_steps:
        n_batches = 0
        for batch in loader:
            n_batches += 1
            factor = lr_factor(step, sched.warmup_steps, sched.total_steps, cfg.optim.schedule,
                               cfg.optim.min_lr_ratio)
            for g in opt.param_groups:
                g["lr"] = sched.peak_lr * factor * g.get("lr_scale", 1.0)
            images = batch["image"].float().to(device)  # (B, 1, S, S) in [0, 1]
            bool_masked_pos = batch["mask"].flatten(1).bool().to(device)  # (B, (S/p)^2), 1 = masked token
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=mixed == "bf16"):
                loss = model(pixel_values=images, bool_masked_pos=bool_masked_pos).loss
            last = loss.item()
            if not math.isfinite(last):
                raise RuntimeError(f"HF peer: non-finite loss at step {step}")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.optim.clip_grad:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.clip_grad)
            opt.step()
            step += 1
            if share is not None:
                share.poll()  # give cores back when another training starts, take them when it ends
            if step % log_every == 0 or step == sched.total_steps:
                metrics.write(json.dumps({"step": step, "loss": last, "lr": sched.peak_lr * factor}) + "\n")
                metrics.flush()
            if step >= sched.total_steps:
                break
        if n_batches == 0:
            raise RuntimeError("HF peer: the pretraining loader yielded no batch (too few images for the batch?)")
    return step, last
