"""Manifest validation: every error names its culprit; rules, groups and defaults resolve."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from echocare.data.build import make_units
from echocare.data.manifest import ManifestError, load_manifest, parse_manifest, parse_size


def _write(tmp_path: Path, doc: dict) -> Path:
    (tmp_path / "imgs").mkdir(exist_ok=True)
    (tmp_path / "imgs" / "a.png").write_bytes(b"x")
    p = tmp_path / "m.yaml"
    p.write_text(yaml.safe_dump(doc))
    return p


def _ds(**kw: object) -> dict:
    return {"name": "pocus_frames", "root": "imgs", "kind": "images", "include": ["**/*.png"]} | kw


def test_brief_manifest_loads_and_resolves(tmp_path: Path) -> None:
    p = _write(tmp_path, {"datasets": [_ds(label="thorax/lung", frame_stride=10)]})
    m = load_manifest(p)
    spec = m.datasets[0]
    assert spec.root == (tmp_path / "imgs").resolve()  # relative root -> manifest folder
    assert spec.label == "thorax/lung" and spec.frame_stride == 10 and not spec.crop
    assert m.image_size == 256 and m.image_format == "png" and spec.min_nonzero_pixels == 1000
    assert spec.near_duplicates is None and spec.noise is None
    assert spec.paths_for("x/y.png") == ["thorax/lung"]


@pytest.mark.parametrize(
    ("doc", "culprit"),
    [
        ({"datasets": [_ds()], "imagesize": 256}, "imagesize: unknown key (did you mean 'image_size'?)"),
        ({"datasets": [_ds(lable="thorax/lung")]}, "datasets[0].lable: unknown key (did you mean 'datasets[0].label'"),
        ({"datasets": [_ds(label="thorax/lungs")]}, "'thorax/lungs'"),
        ({"datasets": [_ds(labels=[{"regex": "a", "path": "abdomen/spleen_x"}])]}, "'abdomen/spleen_x'"),
        ({"datasets": [_ds(label_space=["thorax/heart", "nowhere"])]}, "'nowhere'"),
        ({"datasets": [_ds(), _ds()]}, "duplicate dataset name 'pocus_frames'"),
        ({"datasets": [_ds(root="missing_dir")]}, "missing_dir"),
        ({"datasets": [_ds(kind="movies")]}, "'movies'"),
        ({"datasets": [_ds(metadata={"modality": "X-ray"})]}, "'X-ray'"),
        ({"datasets": [_ds(metadata={"modalty": "CEUS"})]}, "datasets[0].metadata.modalty: unknown key"),
        ({"datasets": [_ds(kind="movies")]}, "datasets[0].kind: expected one of images, video, dicom, image_sets, "
                                             "got 'movies' (dataset 'pocus_frames')"),
        ({"datasets": [_ds(include=5)]}, "datasets[0].include: expected a string, a list of strings or null, got 5"),
        ({"datasets": [_ds(), _ds(frame_stride=0)]}, "datasets[1].frame_stride: expected an integer >= 1, got 0"),
        ({"datasets": [_ds(noise_frames={"min_sample": 2})]}, "datasets[0].noise_frames.min_sample: unknown key"),
        ({"datasets": [_ds(group_regex="(unclosed")]}, "(unclosed"),
        ({"datasets": [_ds(near_duplicates=1.5)]}, "near_duplicates"),
        ({"datasets": [_ds(labels=[{"folder": "a", "regex": "b", "path": "thorax"}])]}, "labels[0]"),
        ({"datasets": [_ds()], "dedup": {"exact": False}}, "dedup.exact"),
        ({"datasets": [_ds()], "format": "webp"}, "'webp'"),
        ({"datasets": [_ds()], "ontology": "nope.yaml"}, "nope.yaml"),
        ({"datasets": []}, "datasets"),
    ],
)
def test_manifest_errors_name_the_culprit(tmp_path: Path, doc: dict, culprit: str) -> None:
    p = _write(tmp_path, doc)
    with pytest.raises(ManifestError) as err:
        load_manifest(p)
    assert culprit in str(err.value)
    assert str(p) in str(err.value)


def test_unknown_path_error_suggests_close_match(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="thorax/lung"):
        load_manifest(_write(tmp_path, {"datasets": [_ds(label="thorax/lungs")]}))


def test_rules_label_space_group_and_metadata(tmp_path: Path) -> None:
    doc = {"datasets": [_ds(
        label="thorax/heart",
        labels=[{"folder": "views/a4c", "path": "A4C"}, {"regex": r"_2ch\b|a2c", "paths": ["thorax/heart/a2c"]}],
        label_space="auto", group_regex=r"(?P<group>pt\d+)",
        metadata={"modality": "ceus", "device": "GE", "extra": {"site": "x"}},
        crop="scan_area", near_duplicates=0.95, noise_frames={"min_samples": 4},
    )]}
    spec = load_manifest(_write(tmp_path, doc)).datasets[0]
    assert spec.paths_for("views/a4c/pt01_1.png") == ["thorax/heart/a4c"]  # synonym -> canonical id
    assert spec.paths_for("views/other/pt01_a2c.png") == ["thorax/heart/a2c"]
    assert spec.paths_for("misc/pt02.png") == ["thorax/heart"]
    assert spec.label_space == ["thorax/heart", "thorax/heart/a2c", "thorax/heart/a4c"]
    assert spec.group_for("views/a4c/pt07_1.png", "d") == ("pt07", True)
    assert spec.group_for("nogroup.png", "nogroup.png") == ("nogroup.png", False)
    assert spec.metadata["modality"] == "CEUS" and spec.metadata["site"] == "x" and spec.metadata["device"] == "GE"
    assert spec.crop and spec.near_duplicates == 0.95 and spec.noise is not None and spec.noise.min_samples == 4


def test_top_level_options(tmp_path: Path) -> None:
    doc = {"datasets": [_ds()], "image_size": 128, "format": "jpeg", "shard_max_bytes": "64MiB",
           "shard_max_count": 50, "min_nonzero_pixels": 10, "dedup": {"hash": "dhash", "near_scope": "global"}}
    m = load_manifest(_write(tmp_path, doc))
    assert (m.image_size, m.image_format, m.shard_max_bytes, m.shard_max_count) == (128, "jpeg", 64 << 20, 50)
    assert m.datasets[0].min_nonzero_pixels == 10 and m.hash_kind == "dhash" and m.near_scope == "global"
    assert parse_size("1.5KB", "x") == 1500 and parse_size(10, "x") == 10
    with pytest.raises(ManifestError, match="'lots'"):
        parse_size("lots", "shard_max_bytes")


def test_globs_without_match_is_an_error(tmp_path: Path) -> None:
    m = load_manifest(_write(tmp_path, {"datasets": [_ds(include=["**/*.bmp"])]}))
    with pytest.raises(ManifestError, match="'pocus_frames'"):
        make_units(m)


def test_parse_manifest_rejects_non_mapping(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="mapping"):
        parse_manifest(["not", "a", "mapping"], tmp_path, "inline")


def test_custom_ontology_file(tmp_path: Path) -> None:
    from echocare.ontology import random_ontology

    onto = random_ontology(12, depth=3, seed=0)
    (tmp_path / "onto.yaml").write_text(onto.to_yaml())
    leaf = onto.names[2]  # r0/n1/n2 chain
    m = load_manifest(_write(tmp_path, {"ontology": "onto.yaml", "datasets": [_ds(label=leaf)]}))
    assert m.ontology == str((tmp_path / "onto.yaml").resolve()) and m.datasets[0].label == leaf
    with pytest.raises(ManifestError, match="'thorax/lung'"):
        load_manifest(_write(tmp_path, {"ontology": "onto.yaml", "datasets": [_ds(label="thorax/lung")]}))


def test_image_sets_default_stride_is_one(tmp_path: Path) -> None:
    m = load_manifest(_write(tmp_path, {"frame_stride": 5, "datasets": [
        _ds(kind="image_sets"), _ds(name="v", kind="video", include=["*"]), _ds(name="s", kind="image_sets",
                                                                                frame_stride=2)]}))
    assert [d.frame_stride for d in m.datasets] == [1, 5, 2]


def test_label_csv_passes_finer_labels_through(tmp_path: Path) -> None:
    imgs = tmp_path / "imgs"
    (imgs / "sub").mkdir(parents=True)
    for name in ("a.png", "sub/b.png", "c.png"):
        (imgs / name).write_bytes(b"x")
    (imgs / "views.csv").write_text("image,view\na.png,thorax/heart/a4c\nsub/b.png,thorax/heart;thorax/lung\n"
                                    "c.png,\n")
    doc = {"datasets": [_ds(label="thorax", label_space="auto",
                            label_csv={"file": "views.csv", "path_column": "image", "label_column": "view"})]}
    p = tmp_path / "m.yaml"
    p.write_text(yaml.safe_dump(doc))
    spec = load_manifest(p).datasets[0]
    assert spec.paths_for("a.png") == ["thorax/heart/a4c"]
    assert spec.paths_for("sub/b.png") == ["thorax/heart", "thorax/lung"]
    assert spec.paths_for("c.png") == ["thorax"]  # empty cell: the dataset label applies
    assert spec.label_space == sorted({"thorax", "thorax/heart/a4c", "thorax/heart", "thorax/lung"})
    units = {i["source"]: i["paths"] for u in make_units(load_manifest(p)) for i in u["items"]}
    assert units == {"a.png": ["thorax/heart/a4c"], "sub/b.png": ["thorax/heart", "thorax/lung"], "c.png": ["thorax"]}


@pytest.mark.parametrize(("csv_text", "spec", "culprit"), [
    ("image,view\na.png,thorax/nowhere\n", {"file": "v.csv", "path_column": "image", "label_column": "view"},
     "v.csv line 2"),
    ("image,view\na.png,thorax\n", {"file": "v.csv", "path_column": "file", "label_column": "view"}, "no column"),
    ("image,view\na.png,thorax\n", {"file": "missing.csv", "label_column": "view"}, "does not exist"),
    ("image,view\na.png,thorax\na.png,thorax/lung\n", {"file": "v.csv", "path_column": "image", "label_column": "view"},
     "listed twice"),
    ("image,view\n", {"file": "v.csv", "column": "view"}, r"column: unknown key"),
])
def test_label_csv_errors_name_the_culprit(tmp_path: Path, csv_text: str, spec: dict, culprit: str) -> None:
    p = _write(tmp_path, {"datasets": [_ds(label_csv=spec)]})
    (tmp_path / "imgs" / "v.csv").write_text(csv_text)
    with pytest.raises(ManifestError, match=culprit):
        load_manifest(p)
