"""Small labeled example datasets built from phantom ultrasound images (for docs, tests, smoke runs).

* ``classification``: class folders ``ROOT/<kind>/patientNN_fK.png`` of phantom kinds (e.g. a4c, thyroid, liver);
* ``segmentation``: ``ROOT/images/patientNN_fK.png`` + ``ROOT/masks/patientNN_fK.png`` — a liver phantom
  with a dark elliptical "lesion" (class 1) and a bright one (class 2).

Several frames share a patient id so group-aware splitting can be tried with
``data.group_regex='(patient\\d+)'``. Everything is deterministic in ``seed``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from echocare.data.phantom import phantom_image

__all__ = ["make_example_dataset"]


def _ellipse(size: int, rng: np.random.Generator) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    cx, cy = rng.uniform(0.3, 0.7) * size, rng.uniform(0.35, 0.75) * size
    ax, ay = rng.uniform(0.08, 0.16) * size, rng.uniform(0.06, 0.13) * size
    return ((xx - cx) / ax) ** 2 + ((yy - cy) / ay) ** 2 <= 1.0


def _classification_example(root: Path, rng: np.random.Generator, patients: int, frames: int, size: int,
                            classes: tuple[str, ...]) -> None:
    for c, kind in enumerate(classes):
        (root / kind).mkdir(parents=True, exist_ok=True)
        for p in range(c * patients, (c + 1) * patients):  # patient ids unique across classes
            for f in range(frames):
                img, _ = phantom_image(rng, size, kind)
                Image.fromarray(img).save(root / kind / f"patient{p:02d}_f{f}.png")


def _segmentation_example(root: Path, rng: np.random.Generator, patients: int, frames: int, size: int,
                          classes: tuple[str, ...]) -> None:
    del classes  # a liver phantom with two lesion classes
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    for p in range(patients):
        for f in range(frames):
            img, _ = phantom_image(rng, size, "liver")
            out = img.astype(np.float32)
            mask = np.zeros((size, size), np.uint8)
            dark = _ellipse(size, rng)
            out[dark] *= 0.25
            mask[dark] = 1
            bright = _ellipse(size, rng) & ~dark
            out[bright] = np.clip(out[bright] * 1.6 + 60, 0, 255)
            mask[bright] = 2
            name = f"patient{p:02d}_f{f}.png"
            Image.fromarray(out.astype(np.uint8)).save(root / "images" / name)
            Image.fromarray(mask).save(root / "masks" / name)


_EXAMPLES = {"classification": _classification_example, "segmentation": _segmentation_example}


def make_example_dataset(kind: str, root: str | Path, patients: int = 6, frames: int = 2, size: int = 96,
                         classes: tuple[str, ...] = ("a4c", "thyroid", "liver"), seed: int = 0) -> Path:
    """Write a phantom-based labeled dataset.

    Args:
        kind: Example layout, ``"classification"`` (class folders) or ``"segmentation"`` (images + masks).
        root: Output folder (created).
        patients: Patients per class (classification) or in total (segmentation).
        frames: Images per patient.
        size: Image side in pixels.
        classes: Phantom kinds used as classes (classification).
        seed: Randomness seed.

    Returns:
        ``root``.
    """
    if kind not in _EXAMPLES:
        raise ValueError(f"make_example_dataset writes {sorted(_EXAMPLES)} examples, not {kind!r}")
    root = Path(root)
    _EXAMPLES[kind](root, np.random.default_rng(seed), patients, frames, size, classes)
    return root
