"""Convert a timm Swin state dict (an echocare export) to MONAI's 2-D ``SwinTransformer`` keys.

MONAI's ``SwinUNETR`` holds its encoder as ``swinViT``, an instance of
``monai.networks.nets.swin_unetr.SwinTransformer``. The two implementations compute the same function
under the conditions checked by :func:`monai_incompatibilities`; what differs is only bookkeeping:

* **Stage boundaries.** timm stage ``i`` is ``[patch merging (i > 0)] + blocks``; MONAI layer ``i`` is
  ``blocks + patch merging``. So timm ``layers.{i}.downsample`` becomes MONAI ``layers{i}.0.downsample``
  and MONAI's last merging (``layers4.0.downsample``) has no timm counterpart: it keeps MONAI's
  initialisation. MONAI's 5th output (stride 32 × 2) therefore never matches anything pretrained.
* **Outputs.** MONAI returns the patch embedding and every stage *after* its merging, normalised by a
  parameter-free ``layer_norm`` when ``normalize=True``; timm returns each stage *before* the next merging
  and applies the affine final ``norm`` to the last stage. timm's ``norm.*`` is therefore dropped.
* **Names.** ``mlp.fc1/fc2`` → ``mlp.linear1/linear2``; ``layers.{i}.blocks`` → ``layers{i+1}.0.blocks``;
  MONAI keeps ``relative_position_index`` as a persistent buffer, which is recomputed here.
* **Same layouts.** 2-D patch merging concatenates the 2×2 neighbours in the same order
  (``x[0::2, 0::2], x[1::2, 0::2], x[0::2, 1::2], x[1::2, 1::2]``), the relative position bias tables
  use the same ``(2Wh-1)(2Ww-1)`` row-major layout, the shifted-window masks use the same -100 fill.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import nn

from echocare.models.hub import find_encoder_prefix, infer_swin_kwargs, read_weights

logger = logging.getLogger(__name__)

__all__ = [
    "MonaiConversion",
    "convert_file_to_monai",
    "convert_timm_swin_to_monai",
    "load_into_monai",
    "monai_incompatibilities",
    "monai_swin_kwargs",
    "relative_position_index",
    "swin_unetr_problems",
]

# Keys of a MONAI 2-D swinViT that a timm Swin cannot provide (MONAI's extra final patch merging).
_LAST_MERGE = ("layers4.0.downsample.norm.weight", "layers4.0.downsample.norm.bias",
               "layers4.0.downsample.reduction.weight")


@dataclass
class MonaiConversion:
    """Result of :func:`convert_timm_swin_to_monai`.

    Attributes:
        state_dict: MONAI-named tensors (with ``prefix``), ready for ``load_state_dict(strict=False)``.
        dropped: timm keys with no MONAI counterpart (final ``norm``, classifier ``head``, ``mask_token``).
        uninitialised: MONAI keys the conversion cannot fill (the extra last patch merging).
    """

    state_dict: dict[str, torch.Tensor]
    dropped: list[str] = field(default_factory=list)
    uninitialised: list[str] = field(default_factory=list)


def _window(value: Any) -> int:
    """Return a square window size as int, or raise for per-stage / rectangular windows."""
    if isinstance(value, int):
        return value
    if isinstance(value, Sequence) and len(value) == 2 and value[0] == value[1] and isinstance(value[0], int):
        return int(value[0])
    raise ValueError(f"window_size={value!r}: MONAI's swinViT takes one square window for all stages")


def monai_swin_kwargs(model_args: Mapping[str, Any]) -> dict[str, Any]:
    """Translate timm Swin kwargs into ``monai.networks.nets.swin_unetr.SwinTransformer`` kwargs.

    Args:
        model_args: kwargs of ``timm.create_model(architecture, **model_args)`` as stored in an echocare
            export (must contain ``embed_dim``, ``depths``, ``num_heads``, ``window_size``, ``patch_size``).

    Returns:
        kwargs for MONAI's 2-D ``SwinTransformer`` (``spatial_dims=2``, ``patch_norm=True``).

    Raises:
        ValueError: naming the argument MONAI cannot express (not 4 stages, per-stage windows,
            ``head_dim`` overrides, per-stage embed dims or mlp ratios).
    """
    missing = [k for k in ("embed_dim", "depths", "num_heads", "window_size", "patch_size") if k not in model_args]
    if missing:
        raise ValueError(f"model_args lacks {missing}; cannot build MONAI kwargs")
    depths = list(model_args["depths"])
    if len(depths) != 4:
        raise ValueError(f"depths={depths}: MONAI's swinViT always has exactly 4 stages")
    if model_args.get("head_dim") is not None:
        raise ValueError(f"head_dim={model_args['head_dim']!r}: MONAI always uses dim // num_heads")
    if not isinstance(model_args["embed_dim"], int):
        raise ValueError(f"embed_dim={model_args['embed_dim']!r}: MONAI doubles one int embed_dim per stage")
    mlp_ratio = model_args.get("mlp_ratio", 4.0)
    if not isinstance(mlp_ratio, (int, float)):
        raise ValueError(f"mlp_ratio={mlp_ratio!r}: MONAI takes one mlp_ratio for all stages")
    patch = model_args["patch_size"]
    patch = int(patch[0]) if isinstance(patch, Sequence) else int(patch)
    window = _window(model_args["window_size"])
    return {
        "in_chans": int(model_args.get("in_chans", 3)),
        "embed_dim": int(model_args["embed_dim"]),
        "window_size": (window, window),
        "patch_size": (patch, patch),
        "depths": tuple(int(d) for d in depths),
        "num_heads": tuple(int(h) for h in model_args["num_heads"]),
        "mlp_ratio": float(mlp_ratio),
        "qkv_bias": bool(model_args.get("qkv_bias", True)),
        "patch_norm": True,  # timm's Swin always normalises its patch embedding
        "spatial_dims": 2,
    }


def monai_incompatibilities(model_args: Mapping[str, Any], img_size: int | Sequence[int]) -> list[str]:
    """List why MONAI's swinViT would compute different features than timm at this input size.

    Two situations differ (found by comparing both implementations stage by stage):

    * a stage grid *smaller* than the window: timm shrinks the window and its bias table
      (``(2g-1)²`` rows), MONAI keeps the full table and indexes it with the first ``g²`` rows of the
      full-window index, which are not a ``g×g`` grid, so no table can reproduce timm's bias;
    * a grid that is not a multiple of the window with padding larger than the shift: timm rolls
      *then* pads, MONAI pads *then* rolls, so the shifted windows group different tokens.

    Args:
        model_args: timm kwargs (see :func:`monai_swin_kwargs`).
        img_size: input height/width (int or (H, W)).

    Returns:
        Human-readable problems, empty when features match exactly.
    """
    kw = monai_swin_kwargs(model_args)
    window, patch = kw["window_size"][0], kw["patch_size"][0]
    sizes = (img_size, img_size) if isinstance(img_size, int) else tuple(int(s) for s in img_size)
    problems = []
    for axis, size in zip("HW", sizes):
        if size % patch:
            problems.append(f"{axis}={size} is not a multiple of patch_size {patch}")
            continue
        grid = size // patch
        for stage in range(4):
            if grid < window:
                problems.append(f"stage {stage}: {axis} grid {grid} < window {window} (bias table cannot match)")
            elif grid % window and (window - grid % window) > window // 2:
                problems.append(f"stage {stage}: {axis} grid {grid} padded to a multiple of window {window} "
                                f"by more than the shift {window // 2} (timm rolls before padding, MONAI after)")
            grid = (grid + 1) // 2
    return problems


def swin_unetr_problems(monai_kwargs: Mapping[str, Any]) -> list[str]:
    """Why a whole ``SwinUNETR`` cannot be built around these encoder weights (the swinViT alone can).

    Args:
        monai_kwargs: output of :func:`monai_swin_kwargs`.

    Returns:
        Problems, empty when ``SwinUNETR(feature_size=embed_dim, patch_size=2, ...)`` works.
    """
    problems = []
    if monai_kwargs["embed_dim"] % 12:
        problems.append(f"embed_dim {monai_kwargs['embed_dim']} is not divisible by 12 (SwinUNETR's "
                        "feature_size check), e.g. echocare_swin_base (128)")
    if monai_kwargs["patch_size"][0] != 2:
        problems.append(f"patch_size {monai_kwargs['patch_size'][0]}: SwinUNETR's decoder upsamples the "
                        "stride-2 patch grid back to full resolution, so it needs patch_size 2")
    return problems


def relative_position_index(window: int) -> torch.Tensor:
    """Relative position index of a square window, as MONAI stores it (same formula as timm).

    Args:
        window: window side length.

    Returns:
        LongTensor (window², window²).
    """
    coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij"))  # (2, w, w)
    flat = coords.flatten(1)  # (2, w²)
    rel = (flat[:, :, None] - flat[:, None, :]).permute(1, 2, 0).contiguous()  # (w², w², 2)
    rel[:, :, 0] += window - 1
    rel[:, :, 1] += window - 1
    rel[:, :, 0] *= 2 * window - 1
    return rel.sum(-1)


_BLOCK = re.compile(r"^layers\.(\d+)\.blocks\.(\d+)\.(.+)$")
_MERGE = re.compile(r"^layers\.(\d+)\.downsample\.(.+)$")


def convert_timm_swin_to_monai(state_dict: Mapping[str, torch.Tensor], *, prefix: str = "") -> MonaiConversion:
    """Rename a timm Swin state dict to MONAI's 2-D swinViT keys.

    Args:
        state_dict: timm ``SwinTransformer`` state dict (an echocare encoder export; ``mask_token``,
            ``norm.*`` and ``head.*`` are dropped and reported).
        prefix: prepended to every output key, e.g. ``"swinViT."`` to load into a whole ``SwinUNETR``.

    Returns:
        The converted tensors and what was dropped / left uninitialised.

    Raises:
        ValueError: if a key is not part of a timm Swin, or a stage has a shrunken bias table
            (see :func:`monai_incompatibilities`).
    """
    out: dict[str, torch.Tensor] = {}
    dropped: list[str] = []
    window = None
    for key, value in state_dict.items():
        if key == "mask_token" or key.startswith(("norm.", "head.")):
            dropped.append(key)
            continue
        if key.endswith(("relative_position_index", "attn_mask")):
            continue  # buffers; recomputed below
        if key.startswith("patch_embed."):
            out[prefix + key] = value
            continue
        block, merge = _BLOCK.match(key), _MERGE.match(key)
        if block:
            stage, idx, rest = int(block.group(1)), int(block.group(2)), block.group(3)
            rest = rest.replace("mlp.fc1.", "mlp.linear1.").replace("mlp.fc2.", "mlp.linear2.")
            base = f"{prefix}layers{stage + 1}.0.blocks.{idx}."
            out[base + rest] = value
            if rest == "attn.relative_position_bias_table":
                side = (int(round(value.shape[0] ** 0.5)) + 1) // 2
                window = side if window is None else window
                if side != window:
                    raise ValueError(f"{key}: bias table for window {side}, stage 0 uses {window}; this stage's "
                                     "grid was smaller than the window, which MONAI cannot express")
                out[base + "attn.relative_position_index"] = relative_position_index(side)
        elif merge:
            stage, rest = int(merge.group(1)), merge.group(2)
            out[f"{prefix}layers{stage}.0.downsample.{rest}"] = value
        else:
            raise ValueError(f"{key}: not a key of a timm Swin state dict")
    if window is None:
        raise ValueError("state dict has no attention blocks; is this a timm Swin?")
    uninitialised = [prefix + k for k in _LAST_MERGE]
    return MonaiConversion(state_dict=out, dropped=dropped, uninitialised=uninitialised)


def load_into_monai(module: nn.Module, conversion: MonaiConversion) -> None:
    """Load a conversion into a MONAI ``SwinTransformer`` or ``SwinUNETR`` and check nothing else is missing.

    Args:
        module: the MONAI module whose key names match the conversion's prefix.
        conversion: result of :func:`convert_timm_swin_to_monai`.

    Raises:
        RuntimeError: on unexpected keys, shape mismatches, or missing encoder keys other than the
            known-uninitialised last merging (decoder keys of a ``SwinUNETR`` are allowed to be missing).
    """
    result = module.load_state_dict(conversion.state_dict, strict=False)
    if result.unexpected_keys:
        raise RuntimeError(f"unexpected keys for {type(module).__name__}: {result.unexpected_keys[:8]}")
    prefix = conversion.uninitialised[0].split("layers4.")[0] if conversion.uninitialised else ""
    encoder_missing = [k for k in result.missing_keys if k.startswith(prefix) and k not in conversion.uninitialised]
    if encoder_missing:
        raise RuntimeError(f"encoder keys missing from the conversion: {encoder_missing[:8]}")
    logger.info("loaded %d tensors into %s; left at init: %s", len(conversion.state_dict),
                type(module).__name__, ", ".join(conversion.uninitialised))


def convert_file_to_monai(src: str | Path, out: str | Path, *, prefix: str = "swinViT.",
                          img_size: int | None = None) -> MonaiConversion:
    """Convert an echocare export (or stock timm Swin checkpoint) into a MONAI swinViT safetensors file.

    Args:
        src: encoder export, full export (its encoder is taken) or timm Swin state dict.
        out: destination ``.safetensors``; metadata ``monai_kwargs`` (JSON kwargs of MONAI's
            ``SwinTransformer``; ``SwinUNETR`` takes ``feature_size=embed_dim`` and the rest by name),
            ``uninitialised``, ``dropped`` and ``incompatibilities`` (JSON lists).
        prefix: key prefix; ``"swinViT."`` (default) loads into a ``SwinUNETR``, ``""`` into a bare swinViT.
        img_size: input size to check exact equivalence at (default: the export's ``img_size``).

    Returns:
        The conversion (its ``state_dict`` is what was written).

    Raises:
        ValueError: the architecture cannot be expressed by MONAI, or the weights are not a timm Swin.
    """
    state, metadata = read_weights(src)
    enc_prefix = find_encoder_prefix(state, where=str(src))
    state = {k[len(enc_prefix):]: v for k, v in state.items() if k.startswith(enc_prefix)}
    if "model_args" in metadata:
        model_args = json.loads(metadata["model_args"])
    else:
        model_args = infer_swin_kwargs(state)
    kwargs = monai_swin_kwargs(model_args)
    size = img_size if img_size is not None else model_args.get("img_size", 224)
    problems = monai_incompatibilities(model_args, size if isinstance(size, int) else tuple(size))
    for problem in problems:
        logger.warning("MONAI features will differ from timm at input %s: %s", size, problem)
    unetr = swin_unetr_problems(kwargs) if prefix == "swinViT." else []
    for problem in unetr:
        logger.warning("the weights load into MONAI's SwinTransformer, but not a working SwinUNETR: %s", problem)
    conversion = convert_timm_swin_to_monai(state, prefix=prefix)
    meta = {
        "swin_unetr_problems": json.dumps(unetr),
        "monai_kwargs": json.dumps(kwargs),
        "uninitialised": json.dumps(conversion.uninitialised),
        "dropped": json.dumps(conversion.dropped),
        "incompatibilities": json.dumps(problems),
        "source": str(src),
    }
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in conversion.state_dict.items()}, str(out), meta)
    logger.info("wrote %s: %d tensors for MONAI (prefix %r)", out, len(conversion.state_dict), prefix)
    return conversion
