"""Load an encoder backbone from an echocare export or a stock timm Swin checkpoint.

``load_backbone(path)`` accepts

* an echocare export (``echocare export`` / :func:`echocare.jobs.export.export_encoder`): safetensors
  whose metadata carries ``format`` (``echocare-encoder`` or ``echocare-full``), ``architecture`` and
  ``model_args``;
* a stock timm Swin state dict (``.safetensors``, or ``.pth``/``.bin``/``.pt`` read with
  ``weights_only=True``), e.g. ImageNet weights saved from ``timm.create_model("swin_base_patch4_window7_224")``.
  Its architecture is read off the tensor shapes; the classifier head is dropped; RGB patch-embedding
  weights are summed to one channel when the backbone is built for grayscale (``in_chans=1``, the default).

Mask token: an encoder export carries no ``mask_token`` (it is not part of a stock timm Swin), so the
returned backbone has a freshly initialised one (truncated normal, std 0.02). It only matters if the
backbone is used for further masked-image pretraining; ``forward_*`` without a mask never touches it.
A ``--full`` export does carry the pretrained mask token and it is restored.

Untrusted files: nothing is unpickled (torch files load with ``weights_only=True``); a file's
``architecture`` must be an echocare encoder or a timm Swin (v1) name; its ``model_args`` may only hold
Swin constructor arguments, and their sizes are bounded (:data:`ARG_LIMITS`, :data:`MAX_PARAMS`) before
anything is allocated. Every such refusal is a :class:`WeightsFileError` (a ``ValueError``) with a
one-line message.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from timm.models.swin_transformer import checkpoint_filter_fn

from echocare.errors import UserError
from echocare.models.encoder import EchoCareSwin
from echocare.models.registry import ENCODER_DEFAULTS, ENCODER_SPECS

logger = logging.getLogger(__name__)

__all__ = [
    "WeightsFileError",
    "adapt_patch_embed",
    "check_backbone_args",
    "find_encoder_prefix",
    "infer_swin_kwargs",
    "load_backbone",
    "read_weights",
    "timm_architecture_for",
]

ENCODER_FORMAT = "echocare-encoder"
FULL_FORMAT = "echocare-full"
_PICKLE_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt")

#: Constructor arguments a file's ``model_args`` may set (timm ``SwinTransformer``'s plain-data ones).
ALLOWED_ARGS = frozenset({
    "img_size", "patch_size", "in_chans", "num_classes", "global_pool", "embed_dim", "depths", "num_heads",
    "head_dim", "window_size", "always_partition", "strict_img_size", "dynamic_img_size", "mlp_ratio",
    "qkv_bias", "drop_rate", "proj_drop_rate", "attn_drop_rate", "drop_path_rate",
})
#: Inclusive upper bounds checked before a model is built (a Swin-L is embed_dim 192, depths <= 18).
ARG_LIMITS = {"img_size": 4096, "patch_size": 64, "in_chans": 16, "embed_dim": 2048, "depth": 64, "stages": 8,
              "num_heads": 256, "head_dim": 1024, "window_size": 64, "mlp_ratio": 16.0, "tokens_per_side": 1024,
              "num_classes": 100_000}
#: Largest encoder a file may ask for, in parameters (estimated from the arguments; ~8 GB in fp32).
MAX_PARAMS = 2_000_000_000


class WeightsFileError(UserError, ValueError):
    """A weights file that is unreadable, not a plain tensor file, or whose metadata is refused."""


def _ints(value: Any, name: str) -> list[int]:
    vals = value if isinstance(value, (list, tuple)) else [value]
    if not vals or not all(isinstance(v, int) and not isinstance(v, bool) for v in vals):
        raise WeightsFileError(f"model_args {name}={value!r} must be an int or a list of ints")
    return [int(v) for v in vals]


def _bounded(value: Any, name: str, limit: float, low: int = 1) -> list[int]:
    vals = _ints(value, name)
    if any(v < low or v > limit for v in vals):
        raise WeightsFileError(f"model_args {name}={value!r} is outside [{low}, {limit}]")
    return vals


def check_backbone_args(architecture: str, args: dict[str, Any], where: str = "backbone") -> None:
    """Refuse an architecture or arguments a backbone file must not ask for (before any allocation).

    Args:
        architecture: echocare encoder name, or a timm Swin (v1) model name.
        args: ``EchoCareSwin`` / timm ``SwinTransformer`` keyword arguments.
        where: Named in the error (the file).

    Raises:
        WeightsFileError: unknown architecture, an argument that is not a plain Swin size/flag, a size
            outside :data:`ARG_LIMITS`, or more than :data:`MAX_PARAMS` parameters.
    """
    import timm

    known = set(ENCODER_SPECS) | {spec.timm_architecture for spec in ENCODER_SPECS.values()}
    swins = {n for n in timm.list_models("swin_*") if not n.startswith("swinv2")}
    if not isinstance(architecture, str) or architecture not in known | swins:
        raise WeightsFileError(f"{where}: architecture {architecture!r} is neither an echocare encoder nor a timm "
                               "Swin (e.g. swin_base_patch4_window7_224)")
    extra = sorted(set(args) - ALLOWED_ARGS)
    if extra:
        raise WeightsFileError(f"{where}: unexpected model_args {extra}; allowed: {sorted(ALLOWED_ARGS)}")
    lim = ARG_LIMITS
    try:
        sides = _bounded(args.get("img_size", ENCODER_DEFAULTS["img_size"]), "img_size", lim["img_size"])
        patch = _bounded(args.get("patch_size", 4), "patch_size", lim["patch_size"])[0]
        _bounded(args.get("in_chans", 1), "in_chans", lim["in_chans"])
        _bounded(args.get("num_classes", 0), "num_classes", lim["num_classes"], low=0)
        dim = _bounded(args.get("embed_dim", 96), "embed_dim", lim["embed_dim"])[0]
        depths = _bounded(args.get("depths", [2, 2, 6, 2]), "depths", lim["depth"])
        heads = _bounded(args.get("num_heads", [3, 6, 12, 24]), "num_heads", lim["num_heads"])
        if "head_dim" in args and args["head_dim"] is not None:
            _bounded(args["head_dim"], "head_dim", lim["head_dim"])
        window = args.get("window_size", 7)
        for w in (window if isinstance(window, (list, tuple)) else [window]):
            _bounded(w, "window_size", lim["window_size"])
        ratio = args.get("mlp_ratio", 4.0)
        ratios = [float(r) for r in (ratio if isinstance(ratio, (list, tuple)) else [ratio])]
    except (TypeError, ValueError) as err:
        raise WeightsFileError(f"{where}: {err}") from None
    if not 1 <= len(depths) <= lim["stages"] or len(heads) not in (1, len(depths)):
        raise WeightsFileError(f"{where}: model_args depths={depths} / num_heads={heads} do not describe "
                               f"1..{lim['stages']} stages")
    if not all(0 < r <= lim["mlp_ratio"] for r in ratios):
        raise WeightsFileError(f"{where}: model_args mlp_ratio={ratio!r} is outside (0, {lim['mlp_ratio']}]")
    if max(sides) // patch > lim["tokens_per_side"]:
        raise WeightsFileError(f"{where}: img_size {sides} / patch_size {patch} exceeds "
                               f"{lim['tokens_per_side']} tokens per side")
    r = max(ratios)
    params = sum(d * (4 + 2 * r) * (dim * 2 ** i) ** 2 for i, d in enumerate(depths))
    if params > MAX_PARAMS:
        raise WeightsFileError(f"{where}: model_args ask for ~{params / 1e9:.0f}e9 parameters "
                               f"(embed_dim={dim}, depths={depths}); the limit is {MAX_PARAMS / 1e9:.0f}e9")


def read_weights(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Read a state dict and its metadata without unpickling arbitrary objects.

    Args:
        path: ``.safetensors`` file, or a torch file (``.pth``/``.pt``/``.bin``/``.ckpt``) that
            ``torch.load(weights_only=True)`` accepts; a nested ``{"model"|"state_dict": {...}}`` is unwrapped.

    Returns:
        (state dict, metadata); metadata is empty for torch files.

    Raises:
        FileNotFoundError: the path does not exist.
        ValueError: unknown suffix, or the file holds no tensors.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no weights file at {path}")
    if path.suffix == ".safetensors":
        try:
            with safe_open(str(path), framework="pt") as f:
                metadata = dict(f.metadata() or {})
                state = {k: f.get_tensor(k) for k in f.keys()}
        except Exception as err:  # noqa: BLE001 - SafetensorError (truncated, renamed pickle) is no OSError
            raise WeightsFileError(f"{path}: not a readable safetensors file "
                                   f"({str(err).splitlines()[0] if str(err) else type(err).__name__})") from None
    elif path.suffix in _PICKLE_SUFFIXES:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # noqa: BLE001 - UnpicklingError (payload), RuntimeError (bad zip), ...
            first = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
            raise WeightsFileError(f"{path}: refused: not a plain tensor file loadable with weights_only=True "
                                   f"({first[:200]})") from None
        for key in ("model", "state_dict", "module"):
            if isinstance(obj, dict) and isinstance(obj.get(key), dict):
                obj = obj[key]
        state, metadata = obj, {}
    else:
        raise WeightsFileError(f"{path}: unknown weights format {path.suffix!r}; use .safetensors or a torch file "
                         f"({', '.join(_PICKLE_SUFFIXES)})")
    if not isinstance(state, dict) or not any(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsFileError(f"{path}: holds no tensors (not a state dict)")
    return {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}, metadata


def find_encoder_prefix(state_dict: dict[str, torch.Tensor], where: str = "state dict") -> str:
    """Return the key prefix of the one Swin encoder in ``state_dict`` (``""`` for a bare encoder).

    Raises:
        ValueError: no encoder, or several (the candidates are named).
    """
    prefixes = sorted(k[: -len("patch_embed.proj.weight")] for k in state_dict if k.endswith("patch_embed.proj.weight"))
    if not prefixes:
        raise ValueError(f"{where}: no Swin encoder weights (no '*patch_embed.proj.weight' key among "
                         f"{len(state_dict)} tensors)")
    if len(prefixes) > 1:
        raise ValueError(f"{where}: several encoders found with prefixes {prefixes}; export one explicitly")
    return prefixes[0]


def infer_swin_kwargs(state_dict: dict[str, torch.Tensor]) -> dict[str, Any]:
    """Read a timm Swin architecture off its tensor shapes.

    Args:
        state_dict: a bare timm Swin state dict (no prefix).

    Returns:
        ``patch_size, in_chans, embed_dim, depths, num_heads, window_size, mlp_ratio, qkv_bias`` (and
        ``head_dim`` when it is not ``dim // num_heads``).

    Raises:
        ValueError: a tensor the inference needs is missing.
    """
    try:
        proj = state_dict["patch_embed.proj.weight"]  # (D, C, p, p)
    except KeyError as err:
        raise ValueError("not a timm Swin state dict: 'patch_embed.proj.weight' missing") from err
    blocks: dict[int, set[int]] = {}
    for key in state_dict:
        m = re.match(r"layers\.(\d+)\.blocks\.(\d+)\.", key)
        if m:
            blocks.setdefault(int(m.group(1)), set()).add(int(m.group(2)))
    if not blocks or sorted(blocks) != list(range(len(blocks))):
        raise ValueError(f"not a timm Swin state dict: stages found {sorted(blocks)}")
    depths = [len(blocks[i]) for i in range(len(blocks))]
    try:
        tables = [state_dict[f"layers.{i}.blocks.0.attn.relative_position_bias_table"] for i in range(len(depths))]
        fc1 = state_dict["layers.0.blocks.0.mlp.fc1.weight"]  # (hidden, D)
        qkv = state_dict["layers.0.blocks.0.attn.qkv.weight"]  # (3 * heads * head_dim, D)
    except KeyError as err:
        raise ValueError(f"not a timm Swin state dict: {err} missing") from None
    if proj.ndim != 4 or any(t.ndim != 2 for t in tables) or fc1.ndim != 2 or qkv.ndim != 2:
        raise ValueError("not a timm Swin state dict: unexpected tensor ranks")
    num_heads = [int(t.shape[1]) for t in tables]
    window = (int(round(tables[0].shape[0] ** 0.5)) + 1) // 2
    embed_dim = int(proj.shape[0])
    kwargs: dict[str, Any] = {
        "patch_size": int(proj.shape[-1]),
        "in_chans": int(proj.shape[1]),
        "embed_dim": embed_dim,
        "depths": depths,
        "num_heads": num_heads,
        "window_size": window,
        "mlp_ratio": float(fc1.shape[0]) / float(fc1.shape[1]),
        "qkv_bias": "layers.0.blocks.0.attn.qkv.bias" in state_dict,
    }
    head_dim = int(qkv.shape[0]) // (3 * num_heads[0])
    if head_dim * num_heads[0] != embed_dim:
        kwargs["head_dim"] = head_dim
    return kwargs


def adapt_patch_embed(weight: torch.Tensor, in_chans: int) -> torch.Tensor:
    """Adapt patch-embedding weights (D, C, p, p) to ``in_chans`` input channels.

    C → 1 sums the channels (a gray image x fed as RGB (x, x, x) gives the same embedding);
    1 → C repeats and divides by C (same property in reverse).

    Raises:
        ValueError: any other change (e.g. 3 → 2), which has no faithful mapping.
    """
    src = weight.shape[1]
    if src == in_chans:
        return weight
    if in_chans == 1:
        return weight.sum(dim=1, keepdim=True)
    if src == 1:
        return weight.repeat(1, in_chans, 1, 1) / in_chans
    raise ValueError(f"cannot adapt patch_embed from {src} to {in_chans} input channels (only C→1 and 1→C)")


def timm_architecture_for(kwargs: dict[str, Any]) -> str:
    """Stock timm name with the same block layout (used as the recorded identity)."""
    for spec in ENCODER_SPECS.values():
        if spec.embed_dim == kwargs["embed_dim"] and list(spec.depths) == list(kwargs["depths"]):
            return spec.timm_architecture
    return "swin_tiny_patch4_window7_224"


def decode_metadata(metadata: dict[str, str], path: Path) -> dict[str, Any]:
    """Plain-string ``format``/``architecture`` plus JSON-decoded ``model_args``."""
    meta: dict[str, Any] = {k: metadata[k] for k in ("format", "architecture") if k in metadata}
    if "model_args" in metadata:
        try:
            meta["model_args"] = json.loads(metadata["model_args"])
        except json.JSONDecodeError as err:
            raise WeightsFileError(f"{path}: metadata 'model_args' is not JSON ({err})") from None
        if not isinstance(meta["model_args"], dict):
            raise WeightsFileError(f"{path}: metadata 'model_args' is not a JSON object")
    return meta


def load_encoder_state(model: torch.nn.Module, state: dict[str, torch.Tensor], what: str) -> None:
    """Load ``state`` into ``model`` non-strictly; only a missing ``mask_token`` is allowed.

    Raises:
        ValueError: ``"{what}: <error>"`` where a tensor does not fit, or ``"{what}; missing …,
            unexpected …"`` where keys are missing or left over.
    """
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as err:
        raise ValueError(f"{what}: {err}") from err
    missing = [k for k in result.missing_keys if k != "mask_token"]
    if missing or result.unexpected_keys:
        raise ValueError(f"{what}; missing {missing[:8]}, unexpected {result.unexpected_keys[:8]}")


def load_backbone(path: str | Path, **overrides: Any) -> EchoCareSwin:
    """Build an :class:`EchoCareSwin` and load pretrained weights into it.

    Args:
        path: an echocare export (encoder or full) or a stock timm Swin checkpoint (see module docs).
        **overrides: ``EchoCareSwin`` constructor arguments replacing the stored ones, e.g.
            ``img_size=384``, ``drop_path_rate=0.2``, ``in_chans=3``. Relative-position tables are
            resized when the new size shrinks a stage's window; patch embeddings are adapted to ``in_chans``.

    Returns:
        The backbone in train mode, on CPU. Its ``mask_token`` is freshly initialised unless the file
        was a ``--full`` export.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        WeightsFileError: (a ValueError) unreadable or pickled-object file, refused architecture or
            ``model_args`` (see :func:`check_backbone_args`).
        ValueError: the file holds no Swin encoder, or its tensors do not fit the architecture.
    """
    path = Path(path)
    state, raw_meta = read_weights(path)
    meta = decode_metadata(raw_meta, path)
    fmt = meta.get("format")
    prefix = find_encoder_prefix(state, where=str(path))
    if prefix:
        logger.info("%s: taking the encoder under %r (%s)", path, prefix, fmt or "no echocare metadata")
    state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    if fmt in (ENCODER_FORMAT, FULL_FORMAT):
        if not isinstance(meta.get("model_args"), dict) or not isinstance(meta.get("architecture"), str):
            raise WeightsFileError(f"{path}: {fmt} file without 'architecture'/'model_args' metadata")
        args = dict(meta["model_args"])
        arch = meta["architecture"]
    else:
        args = infer_swin_kwargs(state)
        arch = timm_architecture_for(args)
        args["in_chans"] = ENCODER_DEFAULTS["in_chans"]  # grayscale unless overridden
        args["img_size"] = ENCODER_DEFAULTS["img_size"]
        head = [k for k in state if k.startswith("head.")]
        if head:
            logger.info("%s: dropping classifier %s", path, ", ".join(head))
            state = {k: v for k, v in state.items() if not k.startswith("head.")}
    args.update(overrides)
    args["num_classes"] = 0
    check_backbone_args(arch, args, where=str(path))
    model = EchoCareSwin(timm_architecture=arch, **args)
    proj_key = "patch_embed.proj.weight"
    if proj_key in state:
        state[proj_key] = adapt_patch_embed(state[proj_key], model.in_chans)
    mask_token = state.pop("mask_token", None)
    state = checkpoint_filter_fn(state, model)  # resizes bias tables / patch kernels, renames old layouts
    if mask_token is not None:
        state["mask_token"] = mask_token
    load_encoder_state(model, state, f"{path}: weights do not fit the architecture {args}")
    logger.info("loaded backbone from %s (%s, mask_token %s)", path, fmt or "stock timm",
                "restored" if mask_token is not None else "freshly initialised")
    return model
