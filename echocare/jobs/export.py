"""Export a trained encoder (or the whole pretraining model) from a run to one ``.safetensors`` file.

Source resolution (``src``):

* a run directory (has ``checkpoints/``): its newest ``checkpoints/step-*`` folder;
* a checkpoint folder: the accelerate weights inside it, ``model.safetensors`` (``safe_serialization``,
  accelerate's default) or ``pytorch_model.bin`` (read with ``torch.load(weights_only=True)``);
* a weights file directly.

DeepSpeed ZeRO folders are not read: their shards are pickles with optimizer objects, and echocare never
unpickles. The trainer writes a consolidated ``model.safetensors`` next to the DeepSpeed state; for a
folder without one, consolidate with DeepSpeed's own ``zero_to_fp32.py --safe_serialization`` first.

The run's resolved config is found at ``RUN/config.yaml`` (two levels above a checkpoint folder).

File layout: tensors are the encoder's stock-timm state dict (no ``mask_token``) for ``echocare-encoder``,
or the pretraining model's full state dict (``encoder.*``, decoder, classifier, ``encoder.mask_token``)
for ``echocare-full``. Metadata (str → str): ``format``, ``architecture`` (stock timm name),
``model_args`` (JSON kwargs), ``config`` (JSON of the resolved config, ``{}`` if none was found),
``ontology`` (JSON list of node ids, or ``null``), ``ontology_hash``, ``echocare_version``, ``source``,
``sonomqs`` (JSON of the 12 SonoMQS criteria of the model card written next to the export, see
:mod:`echocare.catalog.model_card`).
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path
from typing import Any

import timm
import torch
import yaml
from safetensors.torch import save_file

from echocare import __version__
from echocare.catalog.model_card import export_model_card
from echocare.engine.checkpoint import is_complete
from echocare.engine.state import check_finite_weights
from echocare.errors import DataError
from echocare.models.encoder import EchoCareSwin
from echocare.models.hub import (
    ENCODER_FORMAT,
    FULL_FORMAT,
    check_backbone_args,
    decode_metadata,
    find_encoder_prefix,
    infer_swin_kwargs,
    load_encoder_state,
    read_weights,
    timm_architecture_for,
)
from echocare.models.registry import ENCODER_DEFAULTS, ENCODER_SPECS, resolve_model_name
from echocare.ontology import load_ontology

logger = logging.getLogger(__name__)

__all__ = ["export_encoder", "resolve_checkpoint"]

_WEIGHT_NAMES = ("model.safetensors", "pytorch_model.bin")
_STEP = re.compile(r"^step-(\d+)$")


def _newest_checkpoint(run_dir: Path) -> Path:
    """Newest complete ``checkpoints/step-N`` folder of a run (highest N with the completeness marker)."""
    steps = [(int(m.group(1)), p) for p in (run_dir / "checkpoints").iterdir()
             if p.is_dir() and (m := _STEP.match(p.name))]
    complete = [(n, p) for n, p in steps if is_complete(p)]
    if not complete:
        raise FileNotFoundError(f"{run_dir}/checkpoints holds no complete step-* checkpoint "
                                f"({len(steps)} incomplete)")
    if len(complete) < len(steps):
        logger.warning("export: skipping %d incomplete checkpoint(s) in %s", len(steps) - len(complete), run_dir)
    return max(complete)[1]


def _is_deepspeed(folder: Path) -> bool:
    return any(folder.rglob("*model_states.pt")) or (folder / "latest").is_file()


def resolve_checkpoint(src: str | Path) -> tuple[Path, Path | None]:
    """Find the weights file and the resolved config for ``src``.

    Args:
        src: run directory, checkpoint folder or weights file.

    Returns:
        (weights file, config file or None).

    Raises:
        FileNotFoundError: ``src`` does not exist, or holds no model weights (the message names what
            was looked for and, for DeepSpeed folders, how to consolidate them).
    """
    src = Path(src)
    if not src.exists():
        raise FileNotFoundError(f"export source {src} does not exist (expected a run dir, checkpoint folder "
                                "or weights file)")
    if src.is_dir() and (src / "checkpoints").is_dir():
        run_dir, folder = src, _newest_checkpoint(src)
        logger.info("export: newest checkpoint of %s is %s", src, folder.name)
    elif src.is_dir():
        folder = src
        run_dir = src.parent.parent if src.parent.name == "checkpoints" else src
    else:
        folder = src.parent
        run_dir = folder.parent.parent if folder.parent.name == "checkpoints" else folder
    if src.is_file():
        weights = src
    else:
        found = [folder / n for n in _WEIGHT_NAMES if (folder / n).is_file()]
        if not found:
            hint = ""
            if _is_deepspeed(folder):
                hint = (" It is a DeepSpeed checkpoint: consolidate it without echocare, e.g. "
                        f"`python {folder}/zero_to_fp32.py {folder} OUT_DIR --safe_serialization`, "
                        "then export OUT_DIR/model.safetensors.")
            raise FileNotFoundError(f"{folder} holds no model weights (looked for {', '.join(_WEIGHT_NAMES)}).{hint}")
        weights = found[0]
    config = next((c for c in (run_dir / "config.yaml", folder / "config.yaml") if c.is_file()), None)
    return weights, config


def _load_config(path: Path | None) -> dict[str, Any]:
    if path is None:
        logger.warning("export: no resolved config.yaml found; metadata 'config' will be {}")
        return {}
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise DataError(f"{path}: resolved config is not a mapping")
    return data


def _ontology_meta(config: dict[str, Any], run_dir: Path) -> tuple[list[str] | None, str]:
    """Ontology ids and hash of the run (``model.ontology`` path; null = packaged default)."""
    model_cfg = config.get("model") if isinstance(config.get("model"), dict) else None
    if model_cfg is None or "ontology" not in model_cfg:
        logger.warning("export: config has no model.ontology; metadata 'ontology' will be null")
        return None, ""
    path = model_cfg["ontology"]
    if path is not None and not Path(path).is_file() and (run_dir / path).is_file():
        path = run_dir / path
    try:
        onto = load_ontology(path)
    except (FileNotFoundError, ValueError) as err:
        logger.warning("export: cannot load the run's ontology %s (%s); metadata 'ontology' will be null", path, err)
        return None, ""
    return list(onto.names), onto.hash


def _build_encoder(state: dict[str, torch.Tensor], config: dict[str, Any], where: Path,
                   file_meta: dict[str, Any] | None = None) -> EchoCareSwin:
    """Rebuild the trained encoder from its tensors (shapes) and its image size and name: the weights
    file's own metadata (an echocare export) first, else the run config, else the defaults (warned)."""
    args = infer_swin_kwargs({k: v for k, v in state.items() if k != "mask_token"})
    model_cfg = config.get("model") if isinstance(config.get("model"), dict) else {}
    own = (file_meta or {}).get("model_args") or {}
    if "img_size" in own:
        args["img_size"] = own["img_size"]
    elif "img_size" in model_cfg:
        args["img_size"] = int(model_cfg["img_size"])
    else:
        args["img_size"] = ENCODER_DEFAULTS["img_size"]
        logger.warning("export: %s carries no image size (no model_args metadata, no run config): assuming %s px",
                       where, args["img_size"])
    if isinstance((file_meta or {}).get("architecture"), str):
        arch = file_meta["architecture"]
    else:
        try:
            arch = ENCODER_SPECS[resolve_model_name(str(model_cfg["name"]))].timm_architecture
        except (KeyError, ValueError):  # no / foreign model name: pick the stock name by block layout
            arch = timm_architecture_for(args)
    if own:  # the file's own metadata is untrusted input too: refused when it asks for anything odd
        check_backbone_args(arch, own, where=str(where))
    check_backbone_args(arch, args, where=str(where))
    encoder = EchoCareSwin(timm_architecture=arch, num_classes=0, **args)
    load_encoder_state(encoder, state, f"{where}: encoder tensors do not fit the inferred architecture {args}")
    return encoder


def _check_stock_timm(encoder: EchoCareSwin, tensors: dict[str, torch.Tensor]) -> None:
    """The contract: a stock timm model built from the metadata loads the tensors strictly."""
    stock = timm.create_model(encoder.timm_architecture, pretrained=False, **encoder.timm_kwargs)
    stock.load_state_dict(tensors, strict=True)


def export_encoder(src: str | Path, out: str | Path, full: bool = False) -> Path:
    """Export the encoder (default) or the whole pretraining model of a run to safetensors.

    Args:
        src: run directory, checkpoint folder or weights file (see module docs).
        out: destination ``.safetensors`` path (parent folders are created; written atomically).
        full: also export decoder and classifier (the pretraining model's whole state dict).

    Returns:
        The written path.

    Raises:
        FileNotFoundError: missing source or no model weights in it.
        ValueError: the weights hold no (or several) Swin encoders, or do not fit a Swin;
            ``WeightsFileError`` (a ValueError) for a pickled-object, truncated or refused file.
        NonFiniteWeightsError: the weights hold NaN or infinite values.
    """
    out = Path(out)
    if out.suffix != ".safetensors":
        raise DataError(f"export target {out} must end in .safetensors")
    weights, config_path = resolve_checkpoint(src)
    state, raw_meta = read_weights(weights)
    file_meta = decode_metadata(raw_meta, weights)
    for wrapper in ("_orig_mod.", "module."):  # torch.compile / DDP wrappers
        state = {k.replace(wrapper, "", 1) if k.startswith(wrapper) else k: v for k, v in state.items()}
    enc_prefix = find_encoder_prefix(state, where=str(weights))
    encoder_state = {k[len(enc_prefix):]: v for k, v in state.items() if k.startswith(enc_prefix)}
    config = _load_config(config_path)
    run_dir = config_path.parent if config_path is not None else weights.parent
    encoder = _build_encoder(encoder_state, config, weights, file_meta)

    stock = encoder.stock_state_dict()
    _check_stock_timm(encoder, stock)
    if full:
        if not enc_prefix.endswith("encoder."):
            raise DataError(f"{weights}: --full needs a pretraining model (encoder under '*encoder.'), "
                             f"found the encoder under {enc_prefix!r}")
        model_prefix = enc_prefix[: -len("encoder.")]
        tensors = {k[len(model_prefix):]: v for k, v in state.items() if k.startswith(model_prefix)}
    else:
        tensors = stock
    check_finite_weights(tensors.items(), f"an export of {weights}")  # a diverged run is not exported
    names, onto_hash = _ontology_meta(config, run_dir)
    metadata = {
        "format": FULL_FORMAT if full else ENCODER_FORMAT,
        "architecture": encoder.timm_architecture,
        "model_args": json.dumps(encoder.timm_kwargs, sort_keys=True),
        "config": json.dumps(config, sort_keys=True, default=str),
        "ontology": json.dumps(names),
        "ontology_hash": onto_hash,
        "echocare_version": __version__,
        "source": str(weights),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    # model card (echocare.catalog): <stem>.model-card.md next to the export, SonoMQS criteria in the metadata
    card, criteria = export_model_card(config, run_dir, out)
    metadata["sonomqs"] = json.dumps(criteria, sort_keys=True)
    logger.info("model card %s (SonoMQS %d/12)", card, sum(criteria.values()))
    tmp = out.with_name(out.name + ".tmp")
    # clone: safetensors refuses tensors sharing storage (tied weights, views)
    save_file({k: v.detach().to("cpu").clone().contiguous() for k, v in tensors.items()}, str(tmp), metadata)
    os.replace(tmp, out)
    logger.info("exported %s (%d tensors, %s) from %s", out, len(tensors), metadata["format"], weights)
    return out
