"""Data preparation of the transfer benchmark (bench/transfer.py): subject split, downstream sets, pool, manifest.

The downstream set (``--data``) is a folder with a ``labels.csv`` whose ``image`` column names image files under
the folder; its other columns say which tasks it supports:

==============  ===========================================================================================
column          task
==============  ===========================================================================================
``mask``        segmentation: a mask file per image (binarised: 0/255 or 0/1 masks become class ids 0/1)
``hc_mm``       HC regression (HC18): head circumference in mm; with ``pixel_size_mm_original`` and
                ``scale_factor`` (the original pixel size and the resize factor of the stored image) also in
                pixels of the stored image
``label``       classification: a class name per image (e.g. benign / malignant / normal)
``subject``     optional: images of one subject (patient, study) never straddle the train/val/test split
==============  ===========================================================================================

HC18 (``images/NNN_hc.png``, ``masks/NNN_hc.png``, ``labels.csv`` with ``image, mask, hc_mm``) has no ``subject``
column: the subject is the number before the first ``_`` of the file name. A set with neither makes each image its
own subject (logged).

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


TASK_COLUMNS = {"segmentation": "mask", "regression": "hc_mm", "classification": "label"}


def read_downstream(root: Path) -> tuple[list[dict[str, str]], list[str]]:
    """Rows of ``root/labels.csv`` whose files exist, and the tasks its columns support (see the module docstring).

    Rows whose image (or mask) is missing, or whose label cell of a present column is empty, are counted and logged.

    Raises:
        FileNotFoundError: no labels.csv.
        ValueError: no ``image`` column, no task column, no usable row, or two images with one file name
            (suffix aside).
    """
    csv_path = root / "labels.csv"
    if not csv_path.is_file():
        raise FileNotFoundError(f"{root}: no labels.csv (expected a downstream set, see bench/transfer_data.py)")
    with csv_path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        header = list(reader.fieldnames or [])
        table = list(reader)
    tasks = [t for t, col in TASK_COLUMNS.items() if col in header]
    if "image" not in header or not tasks:
        raise ValueError(f"{csv_path}: needs an image column and at least one of "
                         f"{', '.join(TASK_COLUMNS.values())} (tasks {', '.join(TASK_COLUMNS)}); has {header}")
    rows, missing, empty = [], [], []
    for row in table:
        if any(not (row.get(TASK_COLUMNS[t]) or "").strip() for t in tasks):
            empty.append(row["image"])
        elif (root / row["image"]).is_file() and ("mask" not in header or (root / row["mask"]).is_file()):
            rows.append(row)
        else:
            missing.append(row["image"])
    if missing:
        logger.warning("%s: %d row(s) skipped, image or mask missing: %s", csv_path, len(missing), missing[:5])
    if empty:
        logger.warning("%s: %d row(s) skipped, an empty %s cell: %s", csv_path, len(empty),
                       "/".join(TASK_COLUMNS[t] for t in tasks), empty[:5])
    if not rows:
        raise ValueError(f"{csv_path}: no usable rows")
    stems: dict[str, str] = {}
    for row in rows:
        other = stems.setdefault(Path(row["image"]).stem, row["image"])
        if other != row["image"]:
            raise ValueError(f"{csv_path}: {other} and {row['image']} have one file name (without suffix); the "
                             "benchmark keys images (and their masks) by it, so rename one")
    return rows, tasks


def row_subjects(rows: list[dict[str, str]]) -> list[str]:
    """Each row's subject: its ``subject`` cell, else the HC18 rule (:func:`subject_of`), else the image's stem."""
    out, own = [], 0
    for row in rows:
        subj = (row.get("subject") or "").strip()
        if not subj:
            try:
                subj = subject_of(row["image"])
            except ValueError:
                subj, own = Path(row["image"]).stem, own + 1
        out.append(subj)
    if own:
        logger.warning("%d image(s) have no subject (no subject column, no NNN_ prefix): each is its own subject, "
                       "so images of one patient may straddle the split", own)
    return out


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


def majority_baseline_sentence(work: Path) -> str:
    """The classification report's floor: the training set's most frequent class predicted for every test image."""
    def labels(split: str) -> list[str]:
        with (work / split / "labels.csv").open(newline="") as fh:
            return [r["label"] for r in csv.DictReader(fh)]

    train, test = labels("train"), labels("test")
    majority = max(sorted(set(train)), key=train.count)
    classes = sorted(set(train) | set(test))
    f1 = [2 * test.count(c) / (test.count(c) + len(test)) if c == majority else 0.0 for c in classes]
    return (f"Predicting the training set's most frequent class ({majority}) for every test image: accuracy "
            f"{test.count(majority) / len(test):.4f}, macro-F1 {np.mean(f1):.4f} (the floor a model has to beat).")


def baseline_sentences(work: Path, tasks: list[str], hc_target: str) -> dict[str, str]:
    """Per task, the report's line on the floor a model has to beat (regression and classification)."""
    out = {}
    if "regression" in tasks:
        out["regression"] = mean_baseline_sentence(work, f"hc_{hc_target}")
    if "classification" in tasks:
        out["classification"] = majority_baseline_sentence(work)
    return out


def binary_mask(path: Path) -> np.ndarray:
    """A 0/255 or 0/1 mask as class ids {0, 1}."""
    mask = np.asarray(Image.open(path).convert("L"))
    return (mask > (127 if mask.max() > 1 else 0)).astype(np.uint8)


def prepare_downstream(root: Path, work: Path, fractions: tuple[float, float, float], seed: int,
                       limit_subjects: int | None = None) -> dict:
    """Write ``work/{train,val,test}/`` downstream sets and return the split document.

    Each split folder holds ``images/`` (copies) and, per task the set supports: ``masks/`` (binarised to {0, 1}:
    the labeled-data scanner takes mask values as class ids), ``values.csv`` (``image, hc_mm, group``, plus
    ``hc_px, mm_per_px`` when every row has a pixel size) and ``labels.csv`` (``image, label, group``).

    Returns:
        ``{"subjects": {split: [ids]}, "images": {split: [names]}, "n": {split: count}, "tasks": [task, ...],
        "image_subjects": {name: subject}, "subject_prefix": whether every name starts with its subject (HC18)}``.
    """
    rows, tasks = read_downstream(root)
    row_subject = row_subjects(rows)
    subjects = sorted(set(row_subject))
    if limit_subjects:
        subjects = subjects[:limit_subjects]
        kept = set(subjects)
        rows, row_subject = zip(*[(r, s) for r, s in zip(rows, row_subject) if s in kept])
    assign = split_subjects(subjects, fractions, seed)
    scales = [mm_per_px(r) for r in rows] if "regression" in tasks else [None] * len(rows)
    sized = all(v is not None for v in scales)
    if "regression" in tasks and not sized and any(v is not None for v in scales):
        logger.warning("%s: only some rows have a pixel size; values.csv gets no hc_px", root / "labels.csv")
    # the fine-tuning scanner of segmentation folders reads a subject from the file name only (data.group_regex):
    # HC18's NNN_ prefix, when it is the rule here; otherwise its label fractions subsample images, not subjects
    hc18_names = all(not (r.get("subject") or "").strip() and _SUBJECT.match(Path(r["image"]).name) for r in rows)
    doc: dict = {"subjects": {s: [] for s in SPLITS}, "images": {s: [] for s in SPLITS}, "tasks": tasks,
                 "image_subjects": {}, "subject_prefix": hc18_names}
    for subj in subjects:
        doc["subjects"][assign[subj]].append(subj)
    tables = {"regression": ("values.csv", ["image", "hc_mm", "group", *(["hc_px", "mm_per_px"] if sized else [])]),
              "classification": ("labels.csv", ["image", "label", "group"])}
    writers: dict = {}
    try:
        for split in SPLITS:
            (work / split / "images").mkdir(parents=True, exist_ok=True)
            if "segmentation" in tasks:
                (work / split / "masks").mkdir(exist_ok=True)
            for task, (file, header) in tables.items():
                if task in tasks:
                    fh = (work / split / file).open("w", newline="")
                    writers[split, task] = (fh, csv.writer(fh))
                    writers[split, task][1].writerow(header)
        for r, subj, scale in zip(rows, row_subject, scales):
            split = assign[subj]
            name = Path(r["image"]).name
            shutil.copyfile(root / r["image"], work / split / "images" / name)
            if "segmentation" in tasks:
                Image.fromarray(binary_mask(root / r["mask"])).save(work / split / "masks" / f"{Path(name).stem}.png")
            if "regression" in tasks:
                px = [f"{float(r['hc_mm']) / scale:.4f}", f"{scale:.6g}"] if sized else []
                writers[split, "regression"][1].writerow([f"images/{name}", r["hc_mm"], subj, *px])
            if "classification" in tasks:
                writers[split, "classification"][1].writerow([f"images/{name}", r["label"].strip(), subj])
            doc["images"][split].append(name)
            doc["image_subjects"][name] = subj
    finally:
        for fh, _ in writers.values():
            fh.close()
    doc["n"] = {s: len(doc["images"][s]) for s in SPLITS}
    if not all(doc["n"].values()):
        raise ValueError(f"a split is empty: {doc['n']} (use more subjects)")
    return doc


def downstream_images(root: Path) -> list[Path]:
    """The image files of a downstream set's ``labels.csv`` (its default pretraining pool when it has no
    ``images/`` folder)."""
    rows, _ = read_downstream(root)
    return [root / r["image"] for r in rows]


def prepare_pool(pool: Path, work: Path, test_images: set[str], test_subjects: set[str],
                 same_as_downstream: bool, keep_subjects: set[str] | None = None,
                 files: list[Path] | None = None, subjects: dict[str, str] | None = None) -> dict:
    """Copy the unlabeled pretraining images to ``work/pool`` (test images are never copied).

    When the pool is the downstream set's own images, every image of a test subject is left out (and, with
    ``keep_subjects``, every image of a subject outside it); for another pool, files whose name equals a test
    image are left out too (a copy of a test image must not leak).

    Args:
        pool: folder of the pool (every image under it, or the base of ``files``).
        files: the pool's image files when not every image under ``pool`` (e.g. the rows of a labels.csv).
        subjects: ``{file name: subject}`` of the downstream images (names not in it: :func:`subject_of`).
    """
    exts = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}
    if files is None:
        files = sorted(p for p in pool.rglob("*") if p.suffix.lower() in exts and p.is_file())
    if not files:
        raise ValueError(f"pool {pool}: no images")
    out = work / "pool"
    out.mkdir(parents=True, exist_ok=True)
    kept, dropped = 0, 0
    for p in files:
        leak = p.name in test_images
        if same_as_downstream:
            subj = (subjects or {}).get(p.name)
            if subj is None:
                try:
                    subj = subject_of(p.name)
                except ValueError:
                    pass
            if subj is not None:
                leak = leak or subj in test_subjects or (keep_subjects is not None and subj not in keep_subjects)
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
