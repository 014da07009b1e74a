"""Tests for the packaged default ontology echoatlas.yaml."""

from __future__ import annotations

import re
from importlib import resources

import pytest
import torch

from echocare.ontology import load_ontology

PARTS = ["head_neck", "thorax", "abdomen", "pelvis", "upper_limb", "lower_limb", "back", "fetus", "other"]
REQUIRED = {
    "thorax/heart/a4c": 2, "thorax/heart/a2c": 2, "thorax/heart/plax": 2, "thorax/lung": 1,
    "thorax/breast": 1, "abdomen/liver": 1, "abdomen/kidney": 1, "head_neck/thyroid": 1,
    "head_neck/carotid": 1, "pelvis/prostate": 1, "pelvis/ovary": 1, "fetus/brain": 1, "fetus/heart": 1,
    "fetus/abdomen": 1, "fetus/femur": 1, "upper_limb/nerve": 1, "lower_limb/muscle": 1,
    "other/phantom": 1, "fetus/brain/transthalamic": 2,
}


@pytest.fixture(scope="module")
def raw_text() -> str:
    return resources.files("echocare.ontology").joinpath("echoatlas.yaml").read_text(encoding="utf-8")


def test_default_loads_with_three_levels() -> None:
    onto = load_ontology()
    assert onto.name == "echoatlas"
    assert onto.max_level == 2
    parts = [onto.names[i] for i in onto.level_nodes[0].tolist()]
    assert sorted(parts) == sorted(PARTS)
    assert len(onto.level_nodes[1]) >= 40
    assert len(onto.level_nodes[2]) >= 40


def test_required_ids_present_at_their_level() -> None:
    onto = load_ontology()
    for node_id, level in REQUIRED.items():
        assert onto.levels[onto.index(node_id)] == level, node_id
        assert onto.validate_path(node_id) == node_id


def test_every_node_has_a_dataset_comment(raw_text: str) -> None:
    onto = load_ontology()
    id_lines = [line for line in raw_text.splitlines() if re.match(r"^\s*-\s*id:", line)]
    assert len(id_lines) == len(onto)
    for line in id_lines:
        node_id, _, comment = line.partition("#")
        assert len(comment.strip()) >= 3, f"node line without a dataset comment: {line!r}"
        assert node_id.split("id:", 1)[1].strip() in onto.names


def test_header_counts_match(raw_text: str) -> None:
    onto = load_ontology()
    m = re.search(r"has (\d+) parts, (\d+) organs and (\d+) structures \((\d+) nodes\)", raw_text)
    assert m, "header must state the node counts"
    counts = [len(ix) for ix in onto.level_nodes] + [len(onto)]
    assert [int(g) for g in m.groups()] == counts


def test_synonyms_resolve() -> None:
    onto = load_ontology()
    assert onto.validate_path("A4C") == "thorax/heart/a4c"
    assert onto.validate_path("4ch") == "fetus/heart/four_chamber"
    assert onto.validate_path("dorsum") == "back"
    assert onto.validate_path("Chest") == "thorax"
    with pytest.raises(KeyError, match="thorax/heart/a4c"):
        onto.index("thorax/heart/a4")


def test_default_path_equals_explicit_path() -> None:
    with resources.as_file(resources.files("echocare.ontology").joinpath("echoatlas.yaml")) as path:
        explicit = load_ontology(path)
    assert explicit.hash == load_ontology().hash
    assert explicit.to_dict() == load_ontology().to_dict()


def test_worked_example_from_docs() -> None:
    onto = load_ontology()
    t = onto.encode(["thorax/heart/a4c"], label_space=["thorax/heart/a2c", "thorax/heart/plax", "abdomen"])
    positive = {n for n, v in zip(onto.names, t.tolist()) if v == 1}
    negative = {n for n, v in zip(onto.names, t.tolist()) if v == 0}
    assert positive == {"thorax", "thorax/heart", "thorax/heart/a4c"}
    abdomen_subtree = {n for n in onto.names if n == "abdomen" or n.startswith("abdomen/")}
    assert negative == {"thorax/heart/a2c", "thorax/heart/plax"} | abdomen_subtree
    assert int((t == -1).sum()) == len(onto) - len(positive) - len(negative)
    assert t.dtype == torch.float32
