"""echocare.catalog.templates: manifests for published layouts build shards (synthetic replicas)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from echocare.catalog import TEMPLATES, TemplateError, load_catalog, manifest_for
from echocare.cli import main
from echocare.data.build import build_shards
from echocare.data.manifest import load_manifest


@pytest.fixture(scope="module")
def cat():
    return load_catalog()


def _build(cat, name: str, root: Path, tmp_path: Path, replica) -> tuple[dict, list[dict]]:
    doc = manifest_for(cat, name, root)
    m = tmp_path / "m.yaml"
    m.write_text(yaml.safe_dump(doc))
    load_manifest(m)  # validates as a shards manifest
    index = build_shards(m, tmp_path / "shards")
    return index, replica.samples(tmp_path / "shards")


def _sources(samples: list[dict]) -> set[str]:
    return {s["source"] for s in samples}


def test_busi_published_layout_via_cli(cat, tmp_path, replica) -> None:
    """The issue's done-when: every BUSI image, no mask, breast labels."""
    root = tmp_path / "Dataset_BUSI_with_GT"
    images = ["benign/benign (1).png", "benign/benign (2).png", "malignant/malignant (1).png", "normal/normal (1).png"]
    for i, rel in enumerate(images):
        replica.image(root / rel, i)
        replica.image(root / rel.replace(".png", "_mask.png"), 100 + i)  # real content: would pass curation
    replica.image(root / "benign/benign (2)_mask_1.png", 200)  # second lesion mask
    assert main(["catalog", "manifest", "busi", "--root", str(root), "--out", str(tmp_path / "busi.yaml")]) == 0
    assert main(["shards", "build", "--manifest", str(tmp_path / "busi.yaml"), "--out", str(tmp_path / "s")]) == 0
    samples = replica.samples(tmp_path / "s")
    assert _sources(samples) == set(images)
    assert not any("mask" in s["source"] for s in samples)
    paths = {s["source"]: s["paths"] for s in samples}
    assert paths["benign/benign (1).png"] == ["thorax/breast/lesion"]
    assert paths["malignant/malignant (1).png"] == ["thorax/breast/lesion"]
    assert paths["normal/normal (1).png"] == ["thorax/breast/parenchyma"]
    meta = samples[0]["metadata"]
    assert meta["catalogue_id"] == "busi" and meta["licence"] == "unknown" and meta["country"] == "EG"
    index = json.loads((tmp_path / "s" / "index.json").read_text())
    assert index["datasets"] == {"busi": 4} and sum(index["rejected"].values()) == 0


def test_ddti(cat, tmp_path, replica) -> None:
    root = tmp_path / "ddti"
    for i, rel in enumerate(["1_1.jpg", "1_2.jpg", "2_1.jpg"]):
        replica.image(root / rel, i)
    (root / "1.xml").write_text("<case/>")
    _, samples = _build(cat, "DDTI", root, tmp_path, replica)
    assert _sources(samples) == {"1_1.jpg", "1_2.jpg", "2_1.jpg"}
    assert {s["source"]: s["metadata"]["group"] for s in samples} == {"1_1.jpg": "1", "1_2.jpg": "1", "2_1.jpg": "2"}
    assert all(s["paths"] == ["head_neck/thyroid/nodule"] for s in samples)


def test_hc18(cat, tmp_path, replica) -> None:
    root = tmp_path / "hc18"
    for i, rel in enumerate(["training_set/010_HC.png", "training_set/010_2HC.png", "test_set/010_HC.png"]):
        replica.image(root / rel, i)
    replica.image(root / "training_set/010_HC_Annotation.png", 50)
    _, samples = _build(cat, "HC18", root, tmp_path, replica)
    groups = {s["source"]: s["metadata"]["group"] for s in samples}
    assert groups == {"training_set/010_HC.png": "training_set/010", "training_set/010_2HC.png": "training_set/010",
                      "test_set/010_HC.png": "test_set/010"}  # same number in train and test: other subjects
    assert all(s["paths"] == ["fetus/brain/transthalamic"] for s in samples)
    assert samples[0]["metadata"]["licence"] == "CC-BY-4.0"


def test_echonet_dynamic_videos(cat, tmp_path, replica) -> None:
    root = tmp_path / "EchoNet-Dynamic"
    replica.video(root / "Videos/0X1A.avi", 1)
    (root / "FileList.csv").write_text("FileName,EF\n0X1A,55\n")
    index, samples = _build(cat, "echonet_dynamic", root, tmp_path, replica)
    assert index["datasets"]["echonet_dynamic"] >= 1 and _sources(samples) == {"Videos/0X1A.avi"}
    assert all(s["paths"] == ["thorax/heart/a4c"] for s in samples)


def test_pocus_images_and_videos(cat, tmp_path, replica) -> None:
    root = tmp_path / "covid19_ultrasound" / "data"
    replica.image(root / "pocus_images/convex/Cov_a.png", 1)
    replica.image(root / "pocus_images/linear/Reg_b.jpg", 2)
    replica.video(root / "pocus_videos/convex/Pneu_c.mp4", 3)
    index, samples = _build(cat, "POCUS", root, tmp_path, replica)
    assert set(index["datasets"]) == {"pocus_covid_images", "pocus_covid_videos"}
    assert _sources(samples) == {"pocus_images/convex/Cov_a.png", "pocus_images/linear/Reg_b.jpg",
                                 "pocus_videos/convex/Pneu_c.mp4"}
    assert all(s["paths"] == ["thorax/lung"] for s in samples)


def test_tn3k(cat, tmp_path, replica) -> None:
    root = tmp_path / "tn3k"
    for i, rel in enumerate(["trainval-image/0000.jpg", "test-image/0000.jpg"]):
        replica.image(root / rel, i)
        replica.image(root / rel.replace("-image", "-mask"), 100 + i)
    _, samples = _build(cat, "TN3K", root, tmp_path, replica)
    assert _sources(samples) == {"trainval-image/0000.jpg", "test-image/0000.jpg"}


def test_fetal_planes_from_the_csv(cat, tmp_path, replica) -> None:
    root = tmp_path / "FETAL_PLANES_ZENODO"
    rows = [("Patient00001_Plane1_1_of_2", "Fetal brain", "Trans-thalamic"),
            ("Patient00001_Plane2_2_of_2", "Fetal brain", "Trans-cerebellum"),
            ("Patient00002_Plane3_1_of_1", "Fetal brain", "Other"),
            ("Patient00002_Plane4_1_of_1", "Maternal cervix", "Not A Brain"),
            ("Patient00003_Plane5_1_of_1", "Other", "Not A Brain")]
    lines = ["Image_name;Patient_num;Plane;Brain_plane;Operator;US_Machine;Train "]
    for i, (name, plane, brain) in enumerate(rows):
        replica.image(root / "Images" / f"{name}.png", i)
        lines.append(f"{name};{name[7:12]};{plane};{brain};Op. 1;Voluson E6;1")
    (root / "FETAL_PLANES_DB_data.csv").write_text("\n".join(lines) + "\n")
    _, samples = _build(cat, "Fetal Planes DB", root, tmp_path, replica)
    got = {s["source"][7:-4]: (s["paths"], s["metadata"]["group"]) for s in samples}
    assert got == {"Patient00001_Plane1_1_of_2": (["fetus/brain/transthalamic"], "00001"),
                   "Patient00001_Plane2_2_of_2": (["fetus/brain/transcerebellar"], "00001"),
                   "Patient00002_Plane3_1_of_1": (["fetus/brain"], "00002"),
                   "Patient00002_Plane4_1_of_1": (["pelvis/cervix"], "00002"),
                   "Patient00003_Plane5_1_of_1": (["fetus"], "00003")}
    (root / "FETAL_PLANES_DB_data.csv").unlink()
    with pytest.raises(TemplateError, match="FETAL_PLANES_DB_data.csv"):
        manifest_for(cat, "fetal_planes_db", root)


def test_open_kidney(cat, tmp_path, replica) -> None:
    root = tmp_path / "open_kidney"
    replica.image(root / "images/a.png", 1)
    replica.image(root / "images/b.png", 2)
    replica.image(root / "labels/reviewed_masks_1/a.png", 3)
    _, samples = _build(cat, "Open Kidney", root, tmp_path, replica)
    assert _sources(samples) == {"images/a.png", "images/b.png"}
    assert all(s["paths"] == ["abdomen/kidney"] for s in samples)


def test_nerve_segmentation(cat, tmp_path, replica) -> None:
    root = tmp_path / "ultrasound-nerve-segmentation"
    for i, rel in enumerate(["train/1_1.tif", "train/1_2.tif", "train/2_1.tif", "test/1.tif"]):
        replica.image(root / rel, i)
    for i, rel in enumerate(["train/1_1_mask.tif", "train/1_2_mask.tif", "train/2_1_mask.tif"]):
        replica.image(root / rel, 100 + i)
    _, samples = _build(cat, "nerve segmentation", root, tmp_path, replica)
    groups = {s["source"]: s["metadata"]["group"] for s in samples}
    assert groups == {"train/1_1.tif": "1", "train/1_2.tif": "1", "train/2_1.tif": "2", "test/1.tif": "test/1.tif"}
    assert all(s["paths"] == ["upper_limb/nerve/brachial_plexus"] for s in samples)


def test_bus_bra(cat, tmp_path, replica) -> None:
    root = tmp_path / "BUSBRA"
    for i, rel in enumerate(["Images/bus_0001-l.png", "Images/bus_0001-r.png", "Images/bus_0002-l.png"]):
        replica.image(root / rel, i)
        replica.image(root / rel.replace("Images/bus_", "Masks/mask_"), 100 + i)
    _, samples = _build(cat, "BUS-BRA", root, tmp_path, replica)
    assert {s["source"]: s["metadata"]["group"] for s in samples} == {
        "Images/bus_0001-l.png": "0001", "Images/bus_0001-r.png": "0001", "Images/bus_0002-l.png": "0002"}


def test_udiat(cat, tmp_path, replica) -> None:
    root = tmp_path / "DatasetB"
    for i in range(2):
        replica.image(root / f"original/00000{i}.png", i)
        replica.image(root / f"GT/00000{i}.png", 100 + i)
    _, samples = _build(cat, "UDIAT", root, tmp_path, replica)
    assert _sources(samples) == {"original/000000.png", "original/000001.png"}
    assert all(s["paths"] == ["thorax/breast/lesion"] for s in samples)


def test_every_template_is_tested_and_catalogued(cat) -> None:
    tested = {"busi", "ddti", "hc18", "echonet_dynamic", "pocus_covid", "tn3k", "fetal_planes_db", "open_kidney",
              "ultrasound_nerve_segmentation", "bus_bra", "udiat"}
    assert set(TEMPLATES) == tested and len(tested) >= 10
    assert all(cat.find(t) is not None for t in TEMPLATES)


def test_wrong_layout_and_missing_template(cat, tmp_path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(TemplateError, match="published layout"):
        manifest_for(cat, "busi", tmp_path / "empty")
    with pytest.raises(TemplateError, match="does not exist"):
        manifest_for(cat, "busi", tmp_path / "nope")
    with pytest.raises(TemplateError, match="no manifest template for 'camus'"):
        manifest_for(cat, "CAMUS", tmp_path / "empty")
