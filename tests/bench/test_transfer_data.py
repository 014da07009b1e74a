"""bench/transfer_data.py: deterministic subject split, binarised masks, pool without test images."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

MODULE = Path(__file__).resolve().parents[2] / "bench" / "transfer_data.py"


def _module():
    spec = importlib.util.spec_from_file_location("transfer_data", MODULE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _hc18(root: Path, subjects: int = 10) -> None:
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    lines = ["image,mask,pixel_size_mm_original,hc_mm,scale_factor"]
    for s in range(subjects):
        for suffix in ("hc", "2hc") if s % 3 == 0 else ("hc",):
            name = f"{s:03d}_{suffix}.png"
            Image.fromarray(np.full((20, 30), 40 + s, np.uint8)).save(root / "images" / name)
            mask = np.zeros((20, 30), np.uint8)
            mask[5:15, 8:22] = 255
            Image.fromarray(mask).save(root / "masks" / name)
            lines.append(f"images/{name},masks/{name},0.1,{100 + s},0.32")
    (root / "labels.csv").write_text("\n".join(lines) + "\n")


def test_split_is_deterministic_by_subject_and_order_free():
    td = _module()
    subjects = [f"{i:03d}" for i in range(50)]
    a = td.split_subjects(subjects, (0.7, 0.1, 0.2), seed=0)
    assert a == td.split_subjects(list(reversed(subjects)), (0.7, 0.1, 0.2), seed=0)
    assert a != td.split_subjects(subjects, (0.7, 0.1, 0.2), seed=1)
    counts = {s: list(a.values()).count(s) for s in ("train", "val", "test")}
    assert counts == {"train": 35, "val": 5, "test": 10}
    assert td.subject_of("images/012_2hc.png") == "012"
    with pytest.raises(ValueError, match="subject"):
        td.subject_of("nosubject.png")
    with pytest.raises(ValueError, match="at least 3"):
        td.split_subjects(["a", "b"], (0.7, 0.1, 0.2), 0)


def test_downstream_sets_and_pool(tmp_path):
    td = _module()
    _hc18(tmp_path / "hc18")
    work = tmp_path / "work"
    doc = td.prepare_downstream(tmp_path / "hc18", work, (0.6, 0.2, 0.2), seed=0)
    assert sum(doc["n"].values()) == 14 and all(doc["n"].values()) and doc["subject_prefix"] is True
    for split in ("train", "val", "test"):  # a subject's images never straddle splits
        for name in doc["images"][split]:
            assert td.subject_of(name) in doc["subjects"][split]
    mask = np.asarray(Image.open(work / "test" / "masks" / doc["images"]["test"][0]))
    assert set(np.unique(mask)) == {0, 1}  # 0/255 masks become class ids 0/1
    rows = (work / "train" / "values.csv").read_text().splitlines()
    assert rows[0] == "image,hc_mm,group,hc_px,mm_per_px" and len(rows) == doc["n"]["train"] + 1
    image, hc_mm, _, hc_px, scale = rows[1].split(",")
    assert float(scale) == pytest.approx(0.1 / 0.32) and float(hc_px) == pytest.approx(float(hc_mm) / float(scale))

    test_names, test_subjects = set(doc["images"]["test"]), set(doc["subjects"]["test"])
    rep = td.prepare_pool(tmp_path / "hc18" / "images", work, test_names, test_subjects, same_as_downstream=True)
    pool = {p.name for p in (work / "pool").iterdir()}
    assert rep["kept"] == len(pool) == doc["n"]["train"] + doc["n"]["val"] and not pool & test_names

    other = tmp_path / "other"
    other.mkdir()
    leaked = sorted(test_names)[0]
    for name in (leaked, "extra_1.png"):  # a copy of a test image in another pool is left out by name
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(other / name)
    rep = td.prepare_pool(other, tmp_path / "work2", test_names, test_subjects, same_as_downstream=False)
    assert rep == {"kept": 1, "left_out": 1}
    assert td.write_manifest(work, "fetus/brain/transthalamic", 64).is_file()


def test_pixel_sizes_give_hc_in_pixels_and_errors_back_in_mm(tmp_path):
    td = _module()
    assert td.mm_per_px({"image": "a", "pixel_size_mm_original": "0.2", "scale_factor": "0.25"}) == pytest.approx(0.8)
    assert td.mm_per_px({"image": "a", "pixel_size_mm_original": "0.2"}) == pytest.approx(0.2)  # not resized
    assert td.mm_per_px({"image": "a", "hc_mm": "100"}) is None
    for bad in ({"pixel_size_mm_original": "0"}, {"pixel_size_mm_original": "x"},
                {"pixel_size_mm_original": "0.1", "scale_factor": "-1"}):
        with pytest.raises(ValueError, match="a:"):
            td.mm_per_px({"image": "a", **bad})

    values = tmp_path / "values.csv"
    values.write_text("image,hc_mm,group,hc_px,mm_per_px\nimages/a_hc.png,100,a,200,0.5\nimages/b_hc.png,90,b,30,3\n")
    assert td.mm_errors({"a_hc.png": 4.0, "b_hc.png": 1.5}, values) == {"a_hc.png": 2.0, "b_hc.png": 4.5}
    with pytest.raises(ValueError, match="no mm_per_px for 1"):
        td.mm_errors({"c_hc.png": 1.0}, values)

    for split, rows in (("train", "a.png,100,a,200,0.5\nb.png,140,b,300,0.5"), ("test", "c.png,90,c,30,3")):
        (tmp_path / "sets" / split).mkdir(parents=True)
        (tmp_path / "sets" / split / "values.csv").write_text("image,hc_mm,group,hc_px,mm_per_px\n" + rows + "\n")
    assert td.mean_baseline(tmp_path / "sets", "hc_mm") == pytest.approx(30.0)  # |90 - 120|
    assert td.mean_baseline(tmp_path / "sets", "hc_px") == pytest.approx(660.0)  # |30 - 250| px * 3 mm/px

    _hc18(tmp_path / "hc18", subjects=4)  # without pixel sizes: no hc_px column
    labels = tmp_path / "hc18" / "labels.csv"
    labels.write_text("\n".join(",".join(line.split(",")[i] for i in (0, 1, 3)) for line in labels.read_text().split()))
    td.prepare_downstream(tmp_path / "hc18", tmp_path / "work", (0.5, 0.25, 0.25), seed=0)
    assert (tmp_path / "work" / "train" / "values.csv").read_text().splitlines()[0] == "image,hc_mm,group"


def _lesions(root: Path) -> list[tuple[str, str, str]]:
    """A BUSI-like set: class folders, names without a subject prefix, a subject column (two images per patient),
    0/1 masks; returns its (image, label, subject) rows."""
    rows = []
    for i in range(12):
        label = ("benign", "benign", "malignant", "normal")[i % 4]
        name = f"{label}/{label} ({i}).png"
        (root / label).mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((16, 16), 10 * i, np.uint8)).save(root / name)
        mask = np.zeros((16, 16), np.uint8)
        mask[4:9, 4:9] = 1
        Image.fromarray(mask).save(root / f"{label}/{label} ({i})_mask.png")
        rows.append((name, label, f"p{i // 2}"))
    lines = ["image,mask,label,subject"] + [f"{n},{n[:-4]}_mask.png,{lab},{s}" for n, lab, s in rows]
    (root / "labels.csv").write_text("\n".join(lines) + "\n")
    return rows


def test_any_set_with_a_labels_csv_gives_its_tasks_split_by_its_subject_column(tmp_path):
    td = _module()
    rows = _lesions(tmp_path / "busi")
    work = tmp_path / "work"
    doc = td.prepare_downstream(tmp_path / "busi", work, (0.5, 0.25, 0.25), seed=1)
    assert doc["tasks"] == ["segmentation", "classification"] and sum(doc["n"].values()) == 12
    assert doc["subject_prefix"] is False  # subjects from the column, not the names
    subject = {Path(n).name: s for n, _, s in rows}
    label = {Path(n).name: lab for n, lab, _ in rows}
    assert doc["image_subjects"] == subject
    for split in ("train", "val", "test"):  # a patient's two images stay together
        assert {subject[n] for n in doc["images"][split]} == set(doc["subjects"][split])
        table = (work / split / "labels.csv").read_text().splitlines()
        assert table[0] == "image,label,group" and len(table) == doc["n"][split] + 1
        for line in table[1:]:
            image, lab, group = line.split(",")
            assert (work / split / image).is_file() and lab == label[Path(image).name] == image.split(" (")[0][7:]
            assert group == subject[Path(image).name]
        for name in doc["images"][split]:  # 0/1 masks stay class ids 0/1 (not thresholded to nothing at 127)
            assert np.asarray(Image.open(work / split / "masks" / name)).max() == 1
    assert not (work / "train" / "values.csv").exists()

    files = td.downstream_images(tmp_path / "busi")  # no images/ folder: the pool is labels.csv's images
    assert len(files) == 12
    rep = td.prepare_pool(tmp_path / "busi", work, set(doc["images"]["test"]), set(doc["subjects"]["test"]),
                          same_as_downstream=True, files=files, subjects=doc["image_subjects"])
    pool = sorted(p.name for p in (work / "pool").rglob("*.png"))
    assert rep["kept"] == len(pool) == 12 - doc["n"]["test"] and not set(pool) & set(doc["images"]["test"])
    assert not any(n.endswith("_mask.png") for n in pool)

    for split, labels in (("train", ["b", "b", "m"]), ("test", ["b", "m", "m", "n"])):
        (tmp_path / "cls" / split).mkdir(parents=True)
        (tmp_path / "cls" / split / "labels.csv").write_text(
            "image,label,group\n" + "".join(f"x{i}.png,{lab},g{i}\n" for i, lab in enumerate(labels)))
    sentence = td.majority_baseline_sentence(tmp_path / "cls")  # b for all: accuracy 1/4, F1(b) 2/5, others 0
    assert "(b)" in sentence and "accuracy 0.2500" in sentence and f"macro-F1 {0.4 / 3:.4f}" in sentence


def test_a_labels_csv_must_name_a_task_and_unique_file_names(tmp_path):
    td = _module()
    root = tmp_path / "set"
    (root / "a").mkdir(parents=True)
    (root / "b").mkdir()
    for d in ("a", "b"):
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(root / d / "x.png")
    (root / "labels.csv").write_text("image,notes\na/x.png,hello\n")
    with pytest.raises(ValueError, match="at least one of mask, hc_mm, label"):
        td.read_downstream(root)
    (root / "labels.csv").write_text("image,label\na/x.png,cyst\nb/x.png,solid\n")
    with pytest.raises(ValueError, match="a/x.png and b/x.png have one file name"):
        td.read_downstream(root)
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(root / "a" / "x.jpg")
    (root / "labels.csv").write_text("image,label\na/x.png,cyst\na/x.jpg,solid\n")  # a mask x.png would be both's
    with pytest.raises(ValueError, match="a/x.png and a/x.jpg have one file name"):
        td.read_downstream(root)
    (root / "labels.csv").write_text("image,label\na/x.png,cyst\nb/x.png,\nb/gone.png,solid\n")
    rows, tasks = td.read_downstream(root)  # an empty label and a missing file are skipped (and logged)
    assert tasks == ["classification"] and [r["image"] for r in rows] == ["a/x.png"]
    assert td.row_subjects([{"image": "a/x.png"}, {"image": "007_hc.png"}, {"image": "b.png", "subject": "p1"}]) \
        == ["x", "007", "p1"]
