"""Fine-tuning objective: backbone + task head as an engine task, model building and saving.

* :func:`build_backbone` — an encoder from an echocare export, a stock timm Swin checkpoint, or random.
* :func:`build_finetune_model` — backbone + the head of a registered task (``echocare.models.heads``).
* :class:`FinetuneTask` — ``forward(batch) -> {"loss", "logs"}`` with layer-wise lr scales (the engine
  applies its one no-weight-decay rule inside each scale).
* :func:`save_finetuned` / :func:`load_finetuned` — one ``.safetensors`` with the whole model and the
  metadata needed to rebuild it (architecture, head, class names, task config).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from timm.models import group_parameters
from torch import nn

from echocare.errors import DataError
from echocare.models import create_encoder
from echocare.models.encoder import EchoCareSwin
from echocare.models.heads import FinetuneModel, create_head, head_uses_backbone
from echocare.models.heads.unetr import UnetrPyramidDecoder
from echocare.models.hub import FULL_FORMAT, load_backbone, read_weights
from echocare.tasks.registry import get_task
from echocare.tasks.spec import TaskSpec

logger = logging.getLogger(__name__)

FINETUNE_FORMAT = "echocare-finetune"

__all__ = ["FINETUNE_FORMAT", "FinetuneTask", "build_backbone", "build_finetune_model", "build_head",
           "head_arguments", "init_head_from_decoder", "layer_decay_groups", "load_finetuned", "needs_backbone",
           "read_pretrained_decoder", "save_finetuned"]

NO_BACKBONE = "none"  # ``architecture`` metadata of a model without an image backbone (3-D CNN clip models)


def build_backbone(init: str, name: str, img_size: int, patch_size: int = 4, window_size: int = 8,
                   drop_path_rate: float = 0.1, embed_dim: int | None = None, depths: list[int] | None = None,
                   num_heads: list[int] | None = None) -> nn.Module:
    """The encoder to fine-tune.

    Args:
        init: ``"random"``, an echocare export, or a stock timm Swin checkpoint path.
        name: Registered encoder name used for ``"random"``.
        img_size: Input side (position tables are adapted for pretrained weights).
        patch_size, window_size: Architecture of a random encoder.
        drop_path_rate: Stochastic depth during fine-tuning.
        embed_dim, depths, num_heads: Architecture of a random encoder (None = the named model's value); with
            a pretrained ``init`` they are checked against the file when given.

    Raises:
        FileNotFoundError: ``init`` is neither ``random`` nor an existing file.
        ValueError: a given ``embed_dim``/``depths``/``num_heads`` differs from the pretrained file's.
    """
    if init == "random":
        logger.info("backbone: random %s (baseline, no pretrained weights)", name)
        return create_encoder(name, img_size=img_size, patch_size=patch_size, window_size=window_size,
                              drop_path_rate=drop_path_rate, in_chans=1, embed_dim=embed_dim, depths=depths,
                              num_heads=num_heads)
    if not Path(init).is_file():
        raise FileNotFoundError(f"model.init: {init} is not a file (give an exported .safetensors, a timm Swin "
                                "checkpoint, or 'random')")
    backbone = load_backbone(init, img_size=img_size, drop_path_rate=drop_path_rate)
    stored = {"embed_dim": backbone.embed_dim, "depths": backbone._depths, "num_heads": backbone._num_heads}
    for key, want in (("embed_dim", embed_dim), ("depths", depths), ("num_heads", num_heads)):
        if want is not None and (list(want) if isinstance(want, (list, tuple)) else want) != stored[key]:
            raise ValueError(f"model.{key}={want} but {init} holds a backbone with {key}={stored[key]}; "
                             f"set model.{key}=null to use the file's architecture")
    return backbone


def read_pretrained_decoder(path: str | Path) -> dict[str, torch.Tensor]:
    """The ``unetr`` pretraining decoder of a ``--full`` export, keyed like a pyramid head's tensors.

    Raises:
        DataError: not a ``--full`` export, or a run pretrained with another decoder (the message says how to
            make one that fits).
    """
    state, raw = read_weights(path)
    if raw.get("format") != FULL_FORMAT:
        raise DataError(f"{path}: model.head_init=decoder needs a --full export (echocare export RUN --full --out "
                        f"FILE), got format {raw.get('format')!r}")
    prefix = "decoder.net."
    decoder = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    if not decoder:
        raise DataError(f"{path}: holds no unetr decoder (its run was pretrained with another model.decoder); "
                        "model.head_init=decoder needs a run pretrained with model.decoder=unetr")
    return decoder


def init_head_from_decoder(head: nn.Module, decoder: dict[str, torch.Tensor], where: str) -> None:
    """Load a pretraining decoder (:func:`read_pretrained_decoder`) into a pyramid head (segmentation, enhancement).

    Raises:
        DataError: the head is not a pyramid decoder, or the decoder does not fit it.
    """
    if not isinstance(head, UnetrPyramidDecoder):
        raise DataError(f"model.head_init=decoder: the {type(head).__name__} has no pyramid decoder to start "
                        "from a pretraining decoder (segmentation and enhancement heads have)")
    try:
        fresh = head.load_decoder_state(decoder, where)
    except ValueError as err:
        raise DataError(str(err)) from None
    logger.info("head: decoder from %s (%d tensors; fresh: %s)", where, len(decoder) - len(fresh),
                ", ".join(fresh) or "none")


def head_arguments(task: str | TaskSpec, num_outputs: int, temporal: bool, extra: dict | None = None,
                   targets: list | None = None) -> dict[str, Any]:
    """Constructor arguments of the task's head.

    Args:
        task: Registered task name (or its entry).
        num_outputs: Classes / landmarks / values of the scanned data.
        temporal: Items are frame sequences.
        extra: ``model.head`` overrides, applied last.
        targets: Training targets (regression standardises with their mean and std).
    """
    args = get_task(task).head_args(num_outputs, temporal, list(targets or []))
    args.update(extra or {})
    return args


def needs_backbone(task: str | TaskSpec, head_args: dict[str, Any]) -> bool:
    """Whether the head of ``task`` with ``head_args`` reads backbone features (a 3-D CNN clip model does not)."""
    return head_uses_backbone(get_task(task).head, **head_args)


def build_head(backbone: nn.Module | None, task: str | TaskSpec, head_args: dict[str, Any]) -> nn.Module:
    """The head of ``task`` over ``backbone``'s features (None for a head without a backbone)."""
    return create_head(get_task(task).head, backbone.feature_info if backbone is not None else None, **head_args)


def build_finetune_model(backbone: nn.Module | None, task: str | TaskSpec, head_args: dict[str, Any],
                         feature_norm: bool = True, linear_probe: bool = False) -> FinetuneModel:
    """Backbone + the head of ``task`` (``linear_probe`` freezes the backbone).

    ``backbone`` is None for a head that does not use one (see :func:`needs_backbone`).
    """
    head = build_head(backbone, task, head_args)
    if backbone is not None and hasattr(backbone, "mask_token"):
        backbone.mask_token.requires_grad_(False)  # unused in fine-tuning (and DDP rejects unused params)
    return FinetuneModel(backbone, head, feature_norm=feature_norm, freeze_backbone=linear_probe)


def layer_decay_groups(model: FinetuneModel, layer_decay: float, prefix: str = "") -> list[dict]:
    """Lr groups: backbone layer ``i`` of ``n`` gets ``lr_scale = layer_decay ** (n - i)``, the head 1.

    Layers come from the backbone's timm ``group_matcher(coarse=False)`` (patch embedding = 0, one id
    per block, ...). Weight decay is not decided here: the engine splits every group with its one
    no-weight-decay rule (:func:`echocare.engine.optim.is_no_weight_decay`).

    Returns:
        ``[{"params", "names" (with ``prefix``), "lr_scale"}]`` over the trainable parameters.
    """
    backbone = model.backbone
    layer_of: dict[str, int] = {}
    if layer_decay < 1.0 and backbone is not None and hasattr(backbone, "group_matcher"):
        # Frozen parameters (the unused mask_token, which timm groups as an extra top "layer") must not
        # count as a layer: they would push every real block one decay factor down.
        trainable = {n for n, p in backbone.named_parameters() if p.requires_grad}
        for layer, names in group_parameters(backbone, backbone.group_matcher(coarse=False)).items():
            for n in names:
                if n in trainable:
                    layer_of[f"backbone.{n}"] = int(layer)
    n_layers = max(layer_of.values(), default=0) + 1
    groups: dict[float, dict] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        scale = layer_decay ** (n_layers - layer_of[name]) if name in layer_of else 1.0
        g = groups.setdefault(scale, {"params": [], "names": [], "lr_scale": scale})
        g["params"].append(p)
        g["names"].append(prefix + name)
    logger.info("lr groups: %d scales, layer decay %.3g over %d backbone layers", len(groups), layer_decay, n_layers)
    return list(groups.values())


class FinetuneTask(nn.Module):
    """Engine task: ``forward(batch)`` → head loss on the batch's targets.

    Args:
        model: The backbone + head model.
        layer_decay: Layer-wise lr decay factor (1 = none).
    """

    def __init__(self, model: FinetuneModel, layer_decay: float = 1.0) -> None:
        super().__init__()
        self.model = model
        self.layer_decay = layer_decay

    def forward(self, batch: dict[str, Any]) -> dict[str, Any]:
        """``{"loss": scalar, "logs": {...}}`` for a batch with ``image`` and the task's targets."""
        out = self.model(batch["image"])
        res = self.model.loss(out, batch)
        return {"loss": res["loss"], "logs": res.get("logs", {})}

    def lr_groups(self) -> list[dict]:
        """Layer-decayed lr groups, names as in ``self.named_parameters()`` (see :func:`layer_decay_groups`)."""
        return layer_decay_groups(self.model, self.layer_decay, prefix="model.")

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Activation checkpointing in the backbone (none to checkpoint without one)."""
        if self.model.backbone is None:
            logger.warning("train.grad_checkpointing: this model has no backbone; nothing is checkpointed")
            return
        self.model.backbone.set_grad_checkpointing(enable)


def save_finetuned(model: FinetuneModel, path: str | Path, metadata: dict[str, Any]) -> Path:
    """Write the whole model (``backbone.*``, ``head.*``) and its rebuild metadata as safetensors.

    Args:
        model: The fine-tuned model.
        path: Output file.
        metadata: JSON-able dict; must hold ``task`` and ``head_args`` (stored as JSON strings).
    """
    backbone = model.backbone
    meta = {"format": FINETUNE_FORMAT,
            "architecture": backbone.timm_architecture if backbone is not None else NO_BACKBONE,
            "model_args": json.dumps(backbone.timm_kwargs if backbone is not None else {})}
    meta.update({k: v if isinstance(v, str) else json.dumps(v) for k, v in metadata.items()})
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    save_file(state, str(tmp), metadata=meta)
    tmp.replace(path)
    return path


def load_finetuned(path: str | Path) -> tuple[FinetuneModel, dict[str, Any]]:
    """Rebuild a model written by :func:`save_finetuned`; returns ``(model in eval mode, metadata)``.

    Raises:
        ValueError: not an echocare fine-tuned model file, or weights that do not fit.
    """
    path = Path(path)
    with safe_open(str(path), framework="pt") as f:
        raw = dict(f.metadata() or {})
        state = {k: f.get_tensor(k) for k in f.keys()}
    if raw.get("format") != FINETUNE_FORMAT:
        raise DataError(f"{path}: not an echocare fine-tuned model (format {raw.get('format')!r}, "
                         f"expected {FINETUNE_FORMAT!r}); pass a fine-tune run dir or its model.safetensors")
    meta = {k: (json.loads(v) if k not in ("format", "architecture", "task") else v) for k, v in raw.items()}
    no_backbone = meta["architecture"] == NO_BACKBONE
    backbone = None if no_backbone else EchoCareSwin(timm_architecture=meta["architecture"], **meta["model_args"])
    model = build_finetune_model(backbone, meta["task"], meta["head_args"], feature_norm=meta.get("feature_norm", True))
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise DataError(f"{path}: weights do not fit the recorded architecture: {err}") from err
    model.eval()
    return model, meta


def move_batch(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """Tensors (and lists of tensors) of a batch on ``device``."""
    out = {}
    for k, v in batch.items():
        if isinstance(v, torch.Tensor):
            out[k] = v.to(device)
        elif isinstance(v, list) and v and isinstance(v[0], torch.Tensor):
            out[k] = [t.to(device) for t in v]
        else:
            out[k] = v
    return out
