"""Locate the packaged recipe directory; in-code fallback for the debug recipe.

Recipes live in ``recipes/`` at the repository root (next to the ``echocare``
package in an editable / source install). A wheel does not ship them: then
:func:`find_recipe` returns None and callers fall back to the dataclass
defaults plus :data:`DEBUG_OVERRIDES` (kept identical to
``recipes/pretrain/debug.yaml`` by a test).
"""

from __future__ import annotations

from pathlib import Path

# Mirror of recipes/pretrain/debug.yaml as --set overrides.
DEBUG_OVERRIDES: tuple[str, ...] = (
    "model.name=echocare_swin_debug",
    "model.img_size=64",
    "model.drop_path_rate=0.0",
    "data.mask_patch_size=16",
    "data.shuffle_buffer=64",
    "data.num_workers=0",
    "optim.lr=2.0e-3",
    "optim.scale_lr=false",
    "optim.warmup_steps=10",
    "optim.min_lr_ratio=0.05",
    "optim.clip_grad=1.0",
    "train.max_steps=60",
    "train.batch_size=16",
    "train.ckpt_every=30",
    "train.keep_last=2",
    "train.log_every=5",
    "train.image_every=30",
)


def find_recipes_dir() -> Path | None:
    """``recipes/`` next to the package's parent directory, or None when not installed from source."""
    candidate = Path(__file__).resolve().parents[2] / "recipes"
    return candidate if candidate.is_dir() else None


def find_recipe(relative: str) -> Path | None:
    """Path of ``recipes/<relative>`` (e.g. ``"pretrain/debug.yaml"``), or None when unavailable."""
    root = find_recipes_dir()
    if root is None:
        return None
    path = root / relative
    return path if path.is_file() else None
