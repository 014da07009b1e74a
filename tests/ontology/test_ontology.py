"""Tests for echocare.ontology: validation, lookup, encoding, hierarchy indices, round trips."""

from __future__ import annotations

import pickle
import random

import pytest
import torch
import yaml

from echocare.ontology import Ontology, OntologyError, UnknownNodeError, load_ontology, random_ontology

SMALL = [
    {"id": "a", "name": "A", "synonyms": ["alpha"]},
    {"id": "a/b", "synonyms": ["Beta Node"]},
    {"id": "a/b/c"},
    {"id": "a/b/d"},
    {"id": "a/e"},
    {"id": "f"},
    {"id": "f/g"},
]


@pytest.fixture()
def small() -> Ontology:
    return Ontology.from_nodes(SMALL, name="small")


def vec(onto: Ontology, ones: set[str], zeros: set[str]) -> list[float]:
    return [1.0 if n in ones else 0.0 if n in zeros else -1.0 for n in onto.names]


# ---------------------------------------------------------------- construction & validation
def test_derived_fields(small: Ontology) -> None:
    assert small.names == ["a", "a/b", "a/b/c", "a/b/d", "a/e", "f", "f/g"]
    assert small.levels == [0, 1, 2, 2, 1, 0, 1]
    assert small.parents == [-1, 0, 1, 1, 0, -1, 5]
    assert small.display_names[:2] == ["A", "B"]
    assert small.children[1] == [2, 3] and small.children[2] == []
    assert len(small) == 7 and small.max_level == 2 and small.depth == 3
    assert small.parent_index.tolist() == small.parents


@pytest.mark.parametrize(
    ("nodes", "culprit", "what"),
    [
        ([{"id": "x", "parent": "y"}, {"id": "y", "parent": "x"}], "'x'", "cycle"),
        ([{"id": "x", "parent": "x"}], "'x'", "cycle"),
        ([{"id": "a"}, {"id": "a/b"}, {"id": "a/b"}], "'a/b'", "duplicate"),
        ([{"id": "a"}, {"id": "a/b", "parent": "zz"}], "'a/b'", "unknown parent"),
        ([{"id": "a"}, {"id": "a/b/c"}], "'a/b/c'", "unknown parent"),
        ([{"id": "a", "level": 0}, {"id": "a/b", "level": 2}], "'a/b'", "level 2"),
        ([{"id": "a", "level": 1}], "'a'", "level 1"),
        ([{"id": "Thorax"}], "nodes[0].id", "expected an id of lowercase snake_case segments joined by '/'"),
        ([{"id": "a"}, {"id": "a/b.c"}], "nodes[1].id", "got 'a/b.c'"),
        ([{"id": "a"}, {"id": "a/"}], "nodes[1].id", "got 'a/'"),
        ([{"id": "a"}, {"id": "a/two words"}], "nodes[1].id", "got 'a/two words'"),
        ([{"id": "a"}, {"id": "f"}, {"id": "a/b", "parent": "f"}], "'a/b'", "parent id + '/' + leaf"),
        ([{"id": "a"}, {"id": "a/b", "parent": None}], "'a/b'", "single segment"),
        ([{"id": "a", "colour": "red"}], "(node 'a')", "nodes[0].colour: unknown key; valid keys: id, name, level"),
        ([{"name": "no id"}], "nodes[0].id", "missing required key"),
        ([{"id": "a", "parent": None}, {"id": "a/b", "levle": 1}], "(node 'a/b')",
         "nodes[1].levle: unknown key (did you mean 'nodes[1].level'?)"),
        ([{"id": "a", "synonyms": ["x"]}, {"id": "b", "synonyms": ["X"]}], "'b'", "synonym"),
        ([{"id": "a"}, {"id": "b", "synonyms": ["A"]}], "'b'", "synonym"),
        ([{"id": "a", "synonyms": "x"}], "(node 'a')",
         "nodes[0].synonyms: expected a list of non-empty strings or null, got 'x'"),
        ([{"id": "a", "level": True}], "(node 'a')", "nodes[0].level: expected an integer >= 0 or null, got True"),
    ],
)
def test_validation_errors_name_the_node(nodes: list[dict], culprit: str, what: str) -> None:
    with pytest.raises(OntologyError) as info:
        Ontology.from_nodes(nodes)
    message = str(info.value)
    assert culprit in message, message
    assert what in message, message
    assert isinstance(info.value, ValueError)


def test_empty_and_non_list_nodes() -> None:
    with pytest.raises(OntologyError, match="empty"):
        Ontology.from_nodes([])
    with pytest.raises(OntologyError, match="list"):
        Ontology.from_nodes("a")  # type: ignore[arg-type]


def test_document_errors(tmp_path) -> None:
    with pytest.raises(OntologyError, match=r"ontology <dict>: nodez: unknown key \(did you mean 'nodes'\?\)"):
        Ontology.from_dict({"name": "x", "nodez": []})
    with pytest.raises(OntologyError, match="nodes: missing required key"):
        Ontology.from_dict({"name": "x"})
    bad = tmp_path / "bad.yaml"
    bad.write_text("nodes: [ {id: a\n")
    with pytest.raises(OntologyError, match="invalid YAML"):
        load_ontology(bad)
    dup = tmp_path / "dup.yaml"
    dup.write_text("nodes:\n  - {id: a}\n  - {id: a}\n")
    with pytest.raises(OntologyError,
                       match=r"ontology \S*dup\.yaml: nodes\[1\]\.id: duplicate id 'a' \(first at nodes\[0\]\)"):
        load_ontology(dup)
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        load_ontology(tmp_path / "nope.yaml")


def test_child_listed_before_parent_is_fine() -> None:
    onto = Ontology.from_nodes([{"id": "a/b/c"}, {"id": "a/b"}, {"id": "a"}])
    assert onto.levels == [2, 1, 0]
    assert onto.parents == [1, 2, -1]
    assert onto.ancestor_index.tolist() == [[0, 1, 2], [1, 2, 1], [2, 2, 2]]


# ---------------------------------------------------------------- lookup
def test_index_and_synonyms(small: Ontology) -> None:
    assert small.index("a/b/c") == 2
    assert small.index("ALPHA") == 0
    assert small.index("beta node") == 1
    assert small.index(" /a/e/ ") == 4
    assert small.validate_path("Beta Node") == "a/b"
    assert "a/b/d" in small and "a/x" not in small


def test_unknown_path_errors_with_close_matches(small: Ontology) -> None:
    with pytest.raises(KeyError) as info:
        small.index("a/b/cc")
    assert "'a/b/cc'" in str(info.value) and "'a/b/c'" in str(info.value)
    with pytest.raises(ValueError, match="'zzz'"):
        small.validate_path("zzz")
    assert issubclass(UnknownNodeError, OntologyError)


# ---------------------------------------------------------------- encode
def test_encode_single_path_no_label_space(small: Ontology) -> None:
    t = small.encode(["a/b/c"])
    assert t.dtype == torch.float32 and t.shape == (7,)
    assert t.tolist() == vec(small, {"a", "a/b", "a/b/c"}, set())


def test_encode_multilabel(small: Ontology) -> None:
    t = small.encode(["a/b/c", "f/g"])
    assert t.tolist() == vec(small, {"a", "a/b", "a/b/c", "f", "f/g"}, set())


def test_encode_label_space_and_descendants_of_negative(small: Ontology) -> None:
    # a/b/d is a sibling negative; f is a negative root so f/g (not in label space) is 0 too.
    t = small.encode(["a/b/c"], label_space=["a/b/d", "f"])
    assert t.tolist() == vec(small, {"a", "a/b", "a/b/c"}, {"a/b/d", "f", "f/g"})


def test_label_space_ancestor_of_positive_is_positive(small: Ontology) -> None:
    # "a" in the label space is an ancestor of the positive: 1, not 0, and its other
    # descendants stay unknown (they are not below a negative).
    t = small.encode(["a/b/c"], label_space=["a", "a/e"])
    assert t.tolist() == vec(small, {"a", "a/b", "a/b/c"}, {"a/e"})
    assert t[small.index("a/b/d")] == -1


def test_encode_empty_paths_with_label_space(small: Ontology) -> None:
    t = small.encode([], label_space=["a/b"])
    assert t.tolist() == vec(small, set(), {"a/b", "a/b/c", "a/b/d"})
    assert small.encode([]).tolist() == [-1.0] * 7


def test_encode_accepts_synonyms_and_single_string(small: Ontology) -> None:
    assert torch.equal(small.encode("alpha"), small.encode(["a"]))
    assert torch.equal(small.encode(["Beta Node"], ["f"]), small.encode(["a/b"], ["f"]))


def test_encode_unknown_path_raises(small: Ontology) -> None:
    with pytest.raises(ValueError, match="'a/q'"):
        small.encode(["a/q"])
    with pytest.raises(ValueError, match="'nowhere'"):
        small.encode(["a"], label_space=["nowhere"])


def test_encode_batch(small: Ontology) -> None:
    paths = [["a/b/c"], [], ["f/g", "a/e"]]
    spaces = [["f"], None, ["a/b"]]
    batch = small.encode_batch(paths, spaces)
    assert batch.shape == (3, 7)
    for row, p, s in zip(batch, paths, spaces):
        assert torch.equal(row, small.encode(p, s))
    assert small.encode_batch([]).shape == (0, 7)
    with pytest.raises(ValueError, match="2 path lists but 1 label spaces"):
        small.encode_batch([["a"], ["f"]], [None])


# ---------------------------------------------------------------- hierarchy indices
def _shuffled_random(n: int, depth: int, seed: int) -> Ontology:
    base = random_ontology(n, depth, seed)
    nodes = base.to_dict()["nodes"]
    random.Random(seed).shuffle(nodes)
    return Ontology.from_nodes(nodes)


def _slow_ancestors(onto: Ontology, i: int) -> list[int]:
    out = [i]
    while onto.parents[out[-1]] != -1:
        out.append(onto.parents[out[-1]])
    return out


@pytest.mark.parametrize(("n", "depth", "seed"), [(60, 4, 0), (200, 6, 1), (30, 1, 2)])
def test_ancestor_index_matches_slow_reference(n: int, depth: int, seed: int) -> None:
    onto = _shuffled_random(n, depth, seed)
    table = onto.ancestor_index
    assert table.shape == (n, depth) and table.dtype == torch.long
    for i in range(n):
        chain = _slow_ancestors(onto, i)
        assert table[i].tolist() == chain + [i] * (depth - len(chain))
        assert onto.ancestors(i) == chain[1:]
        slow_desc = sorted(j for j in range(n) if i in _slow_ancestors(onto, j) and j != i)
        assert sorted(onto.descendants(i)) == slow_desc
        assert onto.is_leaf(i) == (not slow_desc)
    levels = torch.tensor(onto.levels)
    assert sorted(torch.cat(onto.level_nodes).tolist()) == list(range(n))
    for level, nodes in enumerate(onto.level_nodes):
        assert (levels[nodes] == level).all()


def test_hierarchy_reductions_match_brute_force() -> None:
    onto = _shuffled_random(80, 5, 3)
    x = torch.randn(4, len(onto), requires_grad=True)
    mx = onto.max_over_descendants(x)
    mn = onto.min_over_ancestors(x)
    for i in range(len(onto)):
        sub = [i] + onto.descendants(i)
        anc = [i] + onto.ancestors(i)
        assert torch.allclose(mx[:, i], x[:, sub].amax(dim=1))
        assert torch.allclose(mn[:, i], x[:, anc].amin(dim=1))
    (mx.sum() + mn.sum()).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="last dim 80"):
        onto.max_over_descendants(torch.zeros(2, 79))


def test_descendant_order_is_preorder(small: Ontology) -> None:
    assert small.descendants(0) == [1, 2, 3, 4]
    assert small.descendants(5) == [6]


# ---------------------------------------------------------------- hash, round trips, pickling
def test_hash_identity_semantics(small: Ontology) -> None:
    same = Ontology.from_nodes([{**n, "synonyms": []} for n in SMALL])
    assert same.hash == small.hash  # synonyms / names do not change the label space
    reordered = Ontology.from_nodes(SMALL[::-1])
    assert reordered.hash != small.hash  # index order matters for logits
    fewer = Ontology.from_nodes(SMALL[:-1])
    assert fewer.hash != small.hash
    assert len(small.hash) == 64


def test_yaml_round_trip(small: Ontology, tmp_path) -> None:
    path = tmp_path / "small.yaml"
    path.write_text(small.to_yaml())
    loaded = load_ontology(path)
    assert loaded.to_dict() == small.to_dict()
    assert loaded.hash == small.hash
    assert yaml.safe_load(small.to_yaml())["nodes"][1] == {
        "id": "a/b", "name": "B", "level": 1, "parent": "a", "synonyms": ["Beta Node"],
    }
    assert Ontology.from_dict(small.to_dict()).to_dict() == small.to_dict()


def test_load_reflects_file_changes(tmp_path) -> None:
    path = tmp_path / "o.yaml"
    path.write_text("nodes:\n  - {id: a}\n")
    assert load_ontology(path).names == ["a"]
    path.write_text("nodes:\n  - {id: a}\n  - {id: a/b}\n  - {id: c}\n")
    import os
    os.utime(path, ns=(1, 10**18))  # force a new mtime even on coarse filesystems
    assert load_ontology(path).names == ["a", "a/b", "c"]


def test_pickle_round_trip(small: Ontology) -> None:
    small.max_over_descendants(torch.zeros(1, len(small)))  # populate the device cache
    clone = pickle.loads(pickle.dumps(small))
    assert clone.to_dict() == small.to_dict()
    assert torch.equal(clone.ancestor_index, small.ancestor_index)
    assert torch.equal(clone.encode(["a/b/c"], ["f"]), small.encode(["a/b/c"], ["f"]))


# ---------------------------------------------------------------- synthetic
def test_random_ontology_shape_and_determinism() -> None:
    a = random_ontology(500, 5, seed=7)
    assert len(a) == 500 and a.max_level == 4 and a.depth == 5
    assert a.names == random_ontology(500, 5, seed=7).names
    assert a.names != random_ontology(500, 5, seed=8).names
    assert all(lv < 5 for lv in a.levels)
    assert Ontology.from_dict(a.to_dict()).hash == a.hash  # passes full validation
    with pytest.raises(ValueError, match="depth"):
        random_ontology(10, 0)
    with pytest.raises(ValueError, match="n_nodes"):
        random_ontology(2, 3)


def test_random_ontology_10k_scale() -> None:
    onto = random_ontology(10_000, 8, seed=0)
    assert len(onto) == 10_000 and onto.ancestor_index.shape == (10_000, 8)
    x = torch.rand(2, 10_000)
    mx = onto.max_over_descendants(x)
    assert (mx >= x).all()
    roots = onto.level_nodes[0]
    assert torch.allclose(mx[:, roots].amax(dim=1), x.amax(dim=1))  # every node lies below some root
