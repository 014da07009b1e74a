"""Data preparation of the transfer benchmark (bench/transfer.py): subject split, downstream sets, pool, manifest.

HC18 layout (``--data``): ``images/NNN_hc.png``, ``masks/NNN_hc.png`` (0/255), ``labels.csv`` with columns
``image, mask, hc_mm`` and optionally ``pixel_size_mm_original, scale_factor`` (the original pixel size and the
resize factor of the stored image). The subject is the number before the first ``_`` of the file name.

HC in mm is the head's size in the image times the pixel size, and the pixel size is not in the image (HC18's
spans 0.05 to 0.39 mm; its correlation with HC in mm is 0.82). Given the pixel sizes, the regression sets also carry
``hc_px`` (HC in pixels of the stored image, which the image determines) and ``mm_per_px``, so a model can
regress pixels and be scored in mm, as HC18's own evaluation does (:func:`mm_errors`).
"""

from __future__ import annotations

import csv
import hashlib
import logging
import re
import shutil
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

logger = logging.getLogger("transfer.data")

SPLITS = ("train", "val", "test")
_SUBJECT = re.compile(r"^([^_/]+)_")


def subject_of(name: str) -> str:
    """Subject id of an HC18 file name (the part before the first ``_``).

    Raises:
        ValueError: a name without ``_``.
    """
    m = _SUBJECT.match(Path(name).name)
    if m is None:
        raise ValueError(f"{name}: cannot read the subject (expected NNN_... before the first '_')")
    return m.group(1)


def split_subjects(subjects: list[str], fractions: tuple[float, float, float], seed: int) -> dict[str, str]:
    """Deterministic subject → split assignment.

    Subjects are ordered by a seeded hash (independent of input order and of the other subjects), then cut at
    the cumulative fractions; every split gets at least one subject when there are at least three.

    Args:
        subjects: subject ids (duplicates ignored).
        fractions: (train, val, test), summing to 1.
        seed: split seed.

    Returns:
        ``{subject: "train" | "val" | "test"}``.
    """
    if abs(sum(fractions) - 1.0) > 1e-6 or min(fractions) < 0:
        raise ValueError(f"split fractions must be >= 0 and sum to 1, got {fractions}")
    uniq = sorted(set(subjects), key=lambda s: hashlib.sha256(f"{seed}:{s}".encode()).hexdigest())
    n = len(uniq)
    if n < 3:
        raise ValueError(f"need at least 3 subjects for a train/val/test split, got {n}")
    n_test = max(1, int(round(fractions[2] * n)))
    n_val = max(1, int(round(fractions[1] * n)))
    n_train = n - n_test - n_val
    if n_train < 1:
        raise ValueError(f"{n} subjects leave no training subject with fractions {fractions}")
    out = {}
    for i, s in enumerate(uniq):
        out[s] = "train" if i < n_train else ("val" if i < n_train + n_val else "test")
    return out


def read_hc18(root: Path) -> list[dict[str, str]]:
    """Rows of ``root/labels.csv`` whose image and mask exist (missing files are counted and logged)."""
    csv_path = root / "labels.csv"
    if not csv_path.is_file():
        raise FileNotFoundError(f"{root}: no labels.csv (expected the HC18 layout, see bench/transfer.py --help)")
    rows, missing = [], []
    with csv_path.open(newline="") as fh:
        for row in csv.DictReader(fh):
            if not all(k in row for k in ("image", "mask", "hc_mm")):
                raise ValueError(f"{csv_path}: needs columns image, mask, hc_mm; has {list(row)}")
            if (root / row["image"]).is_file() and (root / row["mask"]).is_file():
                rows.append(row)
            else:
                missing.append(row["image"])
    if missing:
        logger.warning("%s: %d row(s) skipped, image or mask missing: %s", csv_path, len(missing), missing[:5])
    if not rows:
        raise ValueError(f"{csv_path}: no usable rows")
    return rows


def mm_per_px(row: dict[str, str]) -> float | None:
    """Pixel size (mm) of the stored image of an HC18 row, or None without ``pixel_size_mm_original``.

    Raises:
        ValueError: a pixel size or scale factor that is not a positive number.
    """
    if not row.get("pixel_size_mm_original"):
        return None
    try:
        size, scale = float(row["pixel_size_mm_original"]), float(row.get("scale_factor") or 1.0)
    except ValueError:
        raise ValueError(f"{row['image']}: pixel_size_mm_original / scale_factor are not numbers") from None
    if not (size > 0 and scale > 0):
        raise ValueError(f"{row['image']}: pixel size {size} and scale factor {scale} must be > 0")
    return size / scale


def mm_errors(px_errors: dict[str, float], values_csv: Path) -> dict[str, float]:
    """Per-image absolute HC errors in pixels → mm, with each image's ``mm_per_px`` from ``values_csv``.

    Raises:
        ValueError: an image without a pixel size.
    """
    with values_csv.open(newline="") as fh:
        scale = {Path(r["image"]).name: r.get("mm_per_px") for r in csv.DictReader(fh)}
    missing = [n for n in px_errors if not scale.get(n)]
    if missing:
        raise ValueError(f"{values_csv}: no mm_per_px for {len(missing)} image(s), e.g. {missing[:3]}")
    return {n: e * float(scale[n]) for n, e in px_errors.items()}


def mean_baseline(work: Path, target: str) -> float:
    """Test MAE in mm of predicting the training mean of ``target`` (``hc_mm`` or ``hc_px``) for every test image:
    the floor a regression model has to beat. ``work`` holds the ``train/`` and ``test/`` sets."""
    def read(split: str) -> list[dict[str, str]]:
        with (work / split / "values.csv").open(newline="") as fh:
            return list(csv.DictReader(fh))

    mean = float(np.mean([float(r[target]) for r in read("train")]))
    test = read("test")
    scale = [float(r["mm_per_px"]) if target == "hc_px" else 1.0 for r in test]
    return float(np.mean([abs(float(r[target]) - mean) * k for r, k in zip(test, scale)]))


def mean_baseline_sentence(work: Path, target: str) -> str:
    """The report's line on :func:`mean_baseline`."""
    return (f"Predicting the training mean of {target} for every test image: MAE {mean_baseline(work, target):.4f} mm "
            "(the floor a model has to beat).")


def prepare_downstream(root: Path, work: Path, fractions: tuple[float, float, float], seed: int,
                       limit_subjects: int | None = None) -> dict:
    """Write ``work/{train,val,test}/`` downstream sets and return the split document.

    Each split folder holds ``images/`` (copies), ``masks/`` (binarised to {0, 1}: the labeled-data scanner
    takes mask values as class ids) and ``values.csv`` (``image, hc_mm, group``, plus ``hc_px, mm_per_px`` when
    every row has a pixel size) for HC regression.

    Returns:
        ``{"subjects": {split: [ids]}, "images": {split: [names]}, "n": {split: count}}``.
    """
    rows = read_hc18(root)
    subjects = sorted({subject_of(r["image"]) for r in rows})
    if limit_subjects:
        subjects = subjects[:limit_subjects]
        rows = [r for r in rows if subject_of(r["image"]) in set(subjects)]
    assign = split_subjects(subjects, fractions, seed)
    scales = [mm_per_px(r) for r in rows]
    sized = all(v is not None for v in scales)
    if not sized and any(v is not None for v in scales):
        logger.warning("%s: only some rows have a pixel size; values.csv gets no hc_px", root / "labels.csv")
    doc: dict = {"subjects": {s: [] for s in SPLITS}, "images": {s: [] for s in SPLITS}}
    for subj in subjects:
        doc["subjects"][assign[subj]].append(subj)
    writers = {}
    for split in SPLITS:
        for sub in ("images", "masks"):
            (work / split / sub).mkdir(parents=True, exist_ok=True)
        fh = (work / split / "values.csv").open("w", newline="")
        writers[split] = (fh, csv.writer(fh))
        writers[split][1].writerow(["image", "hc_mm", "group", *(["hc_px", "mm_per_px"] if sized else [])])
    try:
        for r, scale in zip(rows, scales):
            subj = subject_of(r["image"])
            split = assign[subj]
            name = Path(r["image"]).name
            shutil.copyfile(root / r["image"], work / split / "images" / name)
            mask = np.asarray(Image.open(root / r["mask"]).convert("L"))
            Image.fromarray((mask > 127).astype(np.uint8)).save(work / split / "masks" / name)
            px = [f"{float(r['hc_mm']) / scale:.4f}", f"{scale:.6g}"] if sized else []
            writers[split][1].writerow([f"images/{name}", r["hc_mm"], subj, *px])
            doc["images"][split].append(name)
    finally:
        for fh, _ in writers.values():
            fh.close()
    doc["n"] = {s: len(doc["images"][s]) for s in SPLITS}
    if not all(doc["n"].values()):
        raise ValueError(f"a split is empty: {doc['n']} (use more subjects)")
    return doc


def prepare_pool(pool: Path, work: Path, test_images: set[str], test_subjects: set[str],
                 same_as_downstream: bool, keep_subjects: set[str] | None = None) -> dict:
    """Copy the unlabeled pretraining images to ``work/pool`` (test images are never copied).

    When the pool is the downstream image folder, every image of a test subject is left out (and, with
    ``keep_subjects``, every image of a subject outside it); for another pool, files whose name equals a test
    image are left out too (a copy of a test image must not leak).
    """
    exts = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}
    files = sorted(p for p in pool.rglob("*") if p.suffix.lower() in exts and p.is_file())
    if not files:
        raise ValueError(f"pool {pool}: no images")
    out = work / "pool"
    out.mkdir(parents=True, exist_ok=True)
    kept, dropped = 0, 0
    for p in files:
        leak = p.name in test_images
        if same_as_downstream:
            try:
                subj = subject_of(p.name)
                leak = leak or subj in test_subjects or (keep_subjects is not None and subj not in keep_subjects)
            except ValueError:
                pass
        if leak:
            dropped += 1
            continue
        rel = p.relative_to(pool)
        dst = out / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(p, dst)
        kept += 1
    logger.info("pool: %d image(s) kept, %d left out (test subjects / test names)", kept, dropped)
    return {"kept": kept, "left_out": dropped}


def write_manifest(work: Path, label: str | None, image_size: int) -> Path:
    """Manifest for ``echocare shards build`` over ``work/pool`` (one dataset, one optional label)."""
    dataset: dict = {"name": "pool", "root": str((work / "pool").resolve()), "kind": "images"}
    if label:
        dataset["label"] = label
    doc = {"image_size": image_size, "shard_max_count": 2000, "datasets": [dataset]}
    path = work / "manifest.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path
