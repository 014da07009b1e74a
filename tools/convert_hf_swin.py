"""Convert a Hugging Face transformers Swin encoder (``SwinModel`` / ``SwinForMaskedImageModeling``) to an
echocare encoder export (stock-timm Swin tensors + echocare metadata, loadable by ``echocare.load_backbone``,
``echocare finetune --set model.init=...`` and, without echocare, by ``timm.create_model``).

    python tools/convert_hf_swin.py HF_MODEL_DIR --out encoder.safetensors

``HF_MODEL_DIR`` is what ``model.save_pretrained(DIR)`` writes: ``config.json`` plus ``model.safetensors``
(a ``pytorch_model.bin`` is read with ``torch.load(weights_only=True)``; nothing is unpickled).

Name mapping (HF → timm), for both transformers 4.x and 5.x layouts:

* ``embeddings.patch_embeddings.projection`` → ``patch_embed.proj``; ``embeddings.norm`` → ``patch_embed.norm``;
  ``embeddings.mask_token`` (1, 1, D) → echocare's ``mask_token`` (1, 1, 1, D) (not part of the export);
* per block: ``layernorm_before/after`` → ``norm1/norm2``; query/key/value (``attention.self.query|key|value``
  or ``attention.q_proj|k_proj|v_proj``) → one ``attn.qkv`` (rows q, k, v); ``attention.output.dense`` or
  ``attention.o_proj`` → ``attn.proj``; ``intermediate.dense``/``output.dense`` or ``mlp.fc1/fc2`` →
  ``mlp.fc1/fc2``; the relative position bias table keeps its layout (both index it the same way);
* HF's ``downsample`` at the *end* of stage i → timm's ``downsample`` at the *start* of stage i+1 (both
  concatenate the 2x2 neighbours in the order (0,0), (1,0), (0,1), (1,1) of (row, col); the test checks it
  numerically); ``layernorm`` → ``norm``. HF's MIM ``decoder.*`` and pooler are dropped.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
from pathlib import Path
from typing import Any

import torch

logger = logging.getLogger("convert_hf_swin")

__all__ = ["convert_hf_swin", "convert_hf_swin_state", "hf_config_to_swin_kwargs", "main"]

_BLOCK = re.compile(r"^encoder\.layers\.(\d+)\.blocks\.(\d+)\.(.+)$")
_DOWN = re.compile(r"^encoder\.layers\.(\d+)\.downsample\.(.+)$")
_BLOCK_RENAMES = {
    "layernorm_before.": "norm1.",
    "layernorm_after.": "norm2.",
    "attention.output.dense.": "attn.proj.",
    "attention.o_proj.": "attn.proj.",
    "intermediate.dense.": "mlp.fc1.",
    "output.dense.": "mlp.fc2.",
    "mlp.fc1.": "mlp.fc1.",
    "mlp.fc2.": "mlp.fc2.",
    "attention.self.relative_position_bias_table": "attn.relative_position_bias_table",
    "attention.relative_position_bias.relative_position_bias_table": "attn.relative_position_bias_table",
}
_QKV = {  # (HF sub-name, part) -> position in timm's fused qkv
    "attention.self.query.": 0, "attention.self.key.": 1, "attention.self.value.": 2,
    "attention.q_proj.": 0, "attention.k_proj.": 1, "attention.v_proj.": 2,
}


def hf_config_to_swin_kwargs(config: dict[str, Any]) -> dict[str, Any]:
    """timm ``SwinTransformer`` arguments equal to an HF ``SwinConfig`` (as a dict, e.g. ``config.json``).

    Raises:
        ValueError: settings timm's Swin cannot express (absolute position embeddings, another activation or
            layer-norm epsilon, non-square images or patches).
    """
    if config.get("use_absolute_embeddings", False):
        raise ValueError("HF config: use_absolute_embeddings=true has no timm Swin equivalent")
    if config.get("hidden_act", "gelu") != "gelu":
        raise ValueError(f"HF config: hidden_act {config.get('hidden_act')!r} (timm Swin uses exact gelu)")
    if abs(float(config.get("layer_norm_eps", 1e-5)) - 1e-5) > 1e-12:
        raise ValueError(f"HF config: layer_norm_eps {config.get('layer_norm_eps')} (timm Swin uses 1e-5)")
    size, patch = config.get("image_size", 224), config.get("patch_size", 4)
    for name, value in (("image_size", size), ("patch_size", patch)):
        if isinstance(value, (list, tuple)) and len(set(value)) != 1:
            raise ValueError(f"HF config: non-square {name} {value} is not supported")
    as_int = lambda v: int(v[0] if isinstance(v, (list, tuple)) else v)  # noqa: E731
    return {
        "img_size": as_int(size),
        "patch_size": as_int(patch),
        "in_chans": int(config.get("num_channels", 3)),
        "embed_dim": int(config.get("embed_dim", 96)),
        "depths": [int(d) for d in config.get("depths", [2, 2, 6, 2])],
        "num_heads": [int(h) for h in config.get("num_heads", [3, 6, 12, 24])],
        "window_size": int(config.get("window_size", 7)),
        "mlp_ratio": float(config.get("mlp_ratio", 4.0)),
        "qkv_bias": bool(config.get("qkv_bias", True)),
    }


def convert_hf_swin_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename an HF Swin state dict to timm's (plus echocare's ``mask_token`` when HF has one).

    Args:
        state: ``SwinModel`` tensors, optionally under ``swin.`` (``SwinForMaskedImageModeling``).

    Returns:
        timm ``SwinTransformer`` tensors (``mask_token`` (1, 1, 1, D) included when present).

    Raises:
        ValueError: no Swin encoder, an incomplete q/k/v triple, or a tensor the mapping does not know.
    """
    prefix = "swin." if any(k.startswith("swin.") for k in state) else ""
    enc = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    if "embeddings.patch_embeddings.projection.weight" not in enc:
        raise ValueError("not an HF Swin state dict: 'embeddings.patch_embeddings.projection.weight' missing")
    out: dict[str, torch.Tensor] = {}
    qkv: dict[tuple[int, int, str], dict[int, torch.Tensor]] = {}
    unknown = []
    for key, value in enc.items():
        if key.endswith(("relative_position_index", "attention_mask")) or key.startswith("pooler."):
            continue  # buffers rebuilt by timm; the pooler is not part of the encoder
        if key.startswith("embeddings.patch_embeddings.projection."):
            out["patch_embed.proj." + key.rsplit(".", 1)[1]] = value
        elif key.startswith("embeddings.norm."):
            out["patch_embed.norm." + key.rsplit(".", 1)[1]] = value
        elif key == "embeddings.mask_token":
            out["mask_token"] = value.reshape(1, 1, 1, -1)  # (1, 1, D) -> (1, 1, 1, D)
        elif key.startswith("layernorm."):
            out["norm." + key.rsplit(".", 1)[1]] = value
        elif m := _DOWN.match(key):
            out[f"layers.{int(m.group(1)) + 1}.downsample.{m.group(2)}"] = value
        elif m := _BLOCK.match(key):
            stage, block, rest = int(m.group(1)), int(m.group(2)), m.group(3)
            base = f"layers.{stage}.blocks.{block}."
            part = next((p for p in _QKV if rest.startswith(p)), None)
            if part is not None:
                qkv.setdefault((stage, block, rest[len(part):]), {})[_QKV[part]] = value
                continue
            src = next((s for s in _BLOCK_RENAMES if rest.startswith(s)), None)
            if src is None:
                unknown.append(key)
                continue
            out[base + _BLOCK_RENAMES[src] + rest[len(src):]] = value
        else:
            unknown.append(key)
    if unknown:
        raise ValueError(f"HF Swin tensors with no timm counterpart: {unknown[:8]}")
    for (stage, block, kind), parts in sorted(qkv.items()):
        if sorted(parts) != [0, 1, 2]:
            raise ValueError(f"stage {stage} block {block}: incomplete query/key/value {kind} ({sorted(parts)})")
        out[f"layers.{stage}.blocks.{block}.attn.qkv.{kind}"] = torch.cat([parts[0], parts[1], parts[2]], dim=0)
    return out


def _read_hf(model_dir: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    config_path = model_dir / "config.json"
    if not config_path.is_file():
        raise FileNotFoundError(f"{model_dir}: no config.json (expected a save_pretrained directory)")
    config = json.loads(config_path.read_text())
    if (model_dir / "model.safetensors").is_file():
        from safetensors.torch import load_file

        state = load_file(str(model_dir / "model.safetensors"))
    elif (model_dir / "pytorch_model.bin").is_file():
        state = torch.load(model_dir / "pytorch_model.bin", map_location="cpu", weights_only=True)
    else:
        raise FileNotFoundError(f"{model_dir}: no model.safetensors or pytorch_model.bin")
    return config, state


def convert_hf_swin(model_dir: str | Path, out: str | Path, img_size: int | None = None) -> Path:
    """Convert a saved HF Swin model directory to an echocare encoder export.

    Args:
        model_dir: ``save_pretrained`` output (``config.json`` + weights).
        out: destination ``.safetensors`` (written atomically).
        img_size: record this input size instead of the HF ``image_size``.

    Returns:
        The written path. The tensors are checked to load strictly into the stock timm model named in the
        metadata before the file is written.
    """
    import timm
    from safetensors.torch import save_file

    from echocare import __version__
    from echocare.models.encoder import EchoCareSwin
    from echocare.models.hub import ENCODER_FORMAT, load_encoder_state, timm_architecture_for

    model_dir, out = Path(model_dir), Path(out)
    if out.suffix != ".safetensors":
        raise ValueError(f"output {out} must end in .safetensors")
    config, state = _read_hf(model_dir)
    args = hf_config_to_swin_kwargs(config)
    if img_size is not None:
        args["img_size"] = int(img_size)
    tensors = convert_hf_swin_state(state)
    tensors.pop("mask_token", None)  # an encoder export is a stock timm state dict
    arch = timm_architecture_for(args)
    encoder = EchoCareSwin(timm_architecture=arch, num_classes=0, **args)
    load_encoder_state(encoder, tensors, f"{model_dir}: converted tensors do not fit {args}")
    stock_tensors = encoder.stock_state_dict()
    timm.create_model(arch, pretrained=False, **encoder.timm_kwargs).load_state_dict(stock_tensors, strict=True)
    metadata = {
        "format": ENCODER_FORMAT,
        "architecture": arch,
        "model_args": json.dumps(encoder.timm_kwargs, sort_keys=True),
        "config": json.dumps({"converted_from": "transformers Swin", "hf_config": config}, sort_keys=True,
                             default=str),
        "ontology": "null",
        "ontology_hash": "",
        "echocare_version": __version__,
        "source": str(model_dir),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    save_file({k: v.detach().cpu().clone().contiguous() for k, v in stock_tensors.items()}, str(tmp), metadata)
    os.replace(tmp, out)
    logger.info("converted %s -> %s (%d tensors, %s %s)", model_dir, out, len(stock_tensors), arch, args)
    return out


def main(argv: list[str] | None = None) -> int:
    """Command line: ``convert_hf_swin.py HF_DIR --out FILE [--img-size N]``; exit 2 on a user error."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("model_dir", help="HF save_pretrained directory (config.json + weights)")
    p.add_argument("--out", required=True, help="destination .safetensors")
    p.add_argument("--img-size", type=int, default=None, help="input size to record (default: HF image_size)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        path = convert_hf_swin(args.model_dir, args.out, args.img_size)
    except (FileNotFoundError, ValueError) as err:
        print(f"convert_hf_swin: error: {err}", file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
