"""Pickle-free serialisation of training state: nested ``state_dict()`` objects → JSON + safetensors.

A state dict (optimizer, lr scheduler, grad scaler, RNG states) is split into a JSON skeleton and a
safetensors file holding its tensors; reading it back constructs only JSON values, tensors and tuples,
so a planted payload has nothing to run. Encoding of the JSON skeleton:

* tensor → ``{"__tensor__": "t<n>"}`` (the key in the sibling ``.safetensors`` file);
* tuple → ``{"__tuple__": [...]}``; dict with non-string keys (optimizer state is keyed by int) →
  ``{"__items__": [[key, value], ...]}``; numpy array → ``{"__ndarray__": [...], "dtype": "uint32"}``;
* non-finite float → ``{"__float__": "nan" | "inf" | "-inf"}`` (the JSON stays strict);
* str, int, finite float, bool, None, list: as themselves.

Anything else raises ``TypeError`` naming the path inside the state, at save time.
"""

from __future__ import annotations

import json
import math
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from echocare.errors import UserError

__all__ = ["CheckpointError", "capture_rng", "decode_state", "encode_state", "load_state", "restore_rng", "save_state"]


class CheckpointError(UserError, ValueError):
    """A checkpoint cannot be resumed: malformed file, old pickled layout, weights that do not fit."""

_MARKERS = ("__tensor__", "__tuple__", "__items__", "__ndarray__", "__float__")


def encode_state(obj: Any, tensors: dict[str, torch.Tensor], where: str = "state") -> Any:
    """Turn ``obj`` into a JSON-able skeleton, moving its tensors into ``tensors``.

    Args:
        obj: A nested state (dicts, lists, tuples, tensors, numbers, strings, numpy arrays).
        tensors: Receives ``{"t<n>": tensor}`` (CPU, contiguous copies).
        where: Path used in error messages.

    Raises:
        TypeError: An object that has no safe encoding.
    """
    if isinstance(obj, torch.Tensor):
        key = f"t{len(tensors)}"
        tensors[key] = obj.detach().to("cpu").clone().contiguous()
        return {"__tensor__": key}
    if isinstance(obj, bool) or obj is None or isinstance(obj, (str, int)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else {"__float__": repr(obj)}
    if isinstance(obj, np.ndarray):
        return {"__ndarray__": obj.tolist(), "dtype": str(obj.dtype)}
    if isinstance(obj, np.generic):
        return encode_state(obj.item(), tensors, where)
    if isinstance(obj, tuple):
        return {"__tuple__": [encode_state(v, tensors, f"{where}[{i}]") for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [encode_state(v, tensors, f"{where}[{i}]") for i, v in enumerate(obj)]
    if isinstance(obj, dict):
        if all(isinstance(k, str) and k not in _MARKERS for k in obj):
            return {k: encode_state(v, tensors, f"{where}.{k}") for k, v in obj.items()}
        return {"__items__": [[encode_state(k, tensors, where), encode_state(v, tensors, f"{where}[{k!r}]")]
                              for k, v in obj.items()]}
    raise TypeError(f"{where}: cannot store a {type(obj).__name__} in a pickle-free checkpoint")


def decode_state(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """Inverse of :func:`encode_state`.

    Raises:
        ValueError: A tensor reference missing from ``tensors`` or a malformed marker.
    """
    if isinstance(obj, list):
        return [decode_state(v, tensors) for v in obj]
    if not isinstance(obj, dict):
        return obj
    if "__tensor__" in obj:
        key = obj["__tensor__"]
        if key not in tensors:
            raise CheckpointError(f"checkpoint state refers to tensor {key!r}, which its .safetensors file lacks")
        return tensors[key]
    if "__tuple__" in obj:
        return tuple(decode_state(v, tensors) for v in obj["__tuple__"])
    if "__items__" in obj:
        return {decode_state(k, tensors): decode_state(v, tensors) for k, v in obj["__items__"]}
    if "__ndarray__" in obj:
        try:
            dtype = np.dtype(str(obj.get("dtype")))
            if dtype.kind not in "biufc":  # numbers only: no object arrays from a handed-over checkpoint
                raise TypeError(f"non-numeric dtype {dtype}")
            return np.asarray(obj["__ndarray__"], dtype=dtype)
        except (TypeError, ValueError) as err:
            raise CheckpointError(f"checkpoint state holds a malformed array ({err})") from None
    if "__float__" in obj:
        if obj["__float__"] not in ("nan", "inf", "-inf"):
            raise CheckpointError(f"checkpoint state holds a malformed float {obj['__float__']!r}")
        return float(obj["__float__"])
    return {k: decode_state(v, tensors) for k, v in obj.items()}


def _fsync_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".part")
    with tmp.open("w") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def save_state(obj: Any, path_stem: str | Path) -> None:
    """Write ``obj`` as ``<stem>.json`` (+ ``<stem>.safetensors`` when it holds tensors)."""
    stem = Path(path_stem)
    tensors: dict[str, torch.Tensor] = {}
    skeleton = encode_state(obj, tensors, where=stem.name)
    if tensors:
        save_file(tensors, str(stem.with_suffix(".safetensors")), {"format": "pt"})
    _fsync_write(stem.with_suffix(".json"), json.dumps(skeleton, allow_nan=False))


def load_state(path_stem: str | Path, device: str | torch.device = "cpu") -> Any:
    """Read what :func:`save_state` wrote (never unpickles).

    Raises:
        FileNotFoundError: ``<stem>.json`` is missing.
        ValueError: The JSON or safetensors file is malformed.
    """
    stem = Path(path_stem)
    try:
        skeleton = json.loads(stem.with_suffix(".json").read_text())
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{stem.with_suffix('.json')}: not valid JSON ({err})") from err
    tensor_file = stem.with_suffix(".safetensors")
    tensors: dict[str, torch.Tensor] = {}
    if tensor_file.is_file():
        try:
            tensors = load_file(str(tensor_file), device=str(device))
        except Exception as err:  # safetensors raises its own SafetensorError for any malformed file
            raise CheckpointError(f"{tensor_file}: not a readable safetensors file ({err})") from err
    return decode_state(skeleton, tensors)


def capture_rng() -> dict[str, Any]:
    """This process's RNG states: Python, NumPy, torch CPU and (when present) every CUDA device."""
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    """Set the RNG states captured by :func:`capture_rng`.

    Raises:
        ValueError: A malformed state.
    """
    try:
        version, internal, gauss = state["python"]
        random.setstate((int(version), tuple(int(x) for x in internal), gauss))
        np.random.set_state(tuple(state["numpy"]))
        torch.set_rng_state(state["torch"].to(torch.uint8))
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all([s.to(torch.uint8) for s in state["cuda"]])
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        raise CheckpointError(f"checkpoint RNG state is malformed: {err}") from err
