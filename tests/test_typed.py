"""echocare.typed: one YAML mechanism, one error style for run configs, manifests and ontologies."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal, Optional, Union

import pytest
import yaml

from echocare.config import ConfigError, PretrainConfig, load_config
from echocare.data.manifest import ManifestError, load_manifest
from echocare.ontology import OntologyError, load_ontology
from echocare.typed import SchemaError, at_least, build, coerce, merge, read_yaml

# "<kind> <file>: <key path>: <reason naming the value>"
STYLE = re.compile(r"^(config|manifest|ontology) \S+\.yaml: [A-Za-z_][\w.\[\]]*: \S.*$")


def _manifest(tmp_path: Path, **top: object) -> Path:
    (tmp_path / "imgs").mkdir(exist_ok=True)
    ds = [{"name": f"d{i}", "root": "imgs"} for i in range(3)]
    doc = {"datasets": ds} | top
    p = tmp_path / "m.yaml"
    p.write_text(yaml.safe_dump(doc))
    return p


def _ontology(tmp_path: Path, nodes: list[dict]) -> Path:
    p = tmp_path / "o.yaml"
    p.write_text(yaml.safe_dump({"name": "t", "nodes": nodes}))
    return p


def _config(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "c.yaml"
    p.write_text(text)
    return p


def _message(exc: type[Exception], fn, *args) -> str:
    with pytest.raises(exc) as info:
        fn(*args)
    assert isinstance(info.value, ValueError)
    return str(info.value)


def test_unknown_keys_have_the_same_style_in_all_three_file_kinds(tmp_path: Path) -> None:
    msgs = [
        _message(ConfigError, load_config, PretrainConfig, _config(tmp_path, "train:\n  max_stpes: 3\n")),
        _message(ManifestError, load_manifest, _manifest(tmp_path, imagesize=64)),
        _message(OntologyError, load_ontology, _ontology(tmp_path, [{"id": "a", "levle": 0}])),
    ]
    for msg in msgs:
        assert STYLE.match(msg), msg
    assert msgs[0].endswith("c.yaml: train.max_stpes: unknown key (did you mean 'train.max_steps'?)")
    assert msgs[1].endswith("m.yaml: imagesize: unknown key (did you mean 'image_size'?)")
    assert msgs[2].endswith("o.yaml: nodes[0].levle: unknown key (did you mean 'nodes[0].level'?) (node 'a')")


def test_wrong_types_have_the_same_style_in_all_three_file_kinds(tmp_path: Path) -> None:
    p = _manifest(tmp_path)
    doc = yaml.safe_load(p.read_text())
    doc["datasets"][2]["include"] = 5
    p.write_text(yaml.safe_dump(doc))
    msgs = [
        _message(ConfigError, load_config, PretrainConfig, _config(tmp_path, "optim:\n  betas: fast\n")),
        _message(ManifestError, load_manifest, p),
        _message(OntologyError, load_ontology, _ontology(tmp_path, [{"id": "a", "synonyms": [1]}])),
    ]
    for msg in msgs:
        assert STYLE.match(msg), msg
    assert msgs[0].endswith("optim.betas: expected a list of numbers, got 'fast'")
    assert msgs[1].endswith("datasets[2].include: expected a string, a list of strings or null, got 5 "
                            "(dataset 'd2')")
    assert msgs[2].endswith("nodes[0].synonyms[0]: expected a non-empty string, got 1 (node 'a')")


def test_invalid_yaml_is_reported_the_same_way(tmp_path: Path) -> None:
    bad = "a: [1\n"
    for exc, fn, name in [(ConfigError, lambda p: load_config(PretrainConfig, p), "config"),
                          (ManifestError, load_manifest, "manifest"), (OntologyError, load_ontology, "ontology")]:
        p = tmp_path / f"{name}.yaml"
        p.write_text(bad)
        assert re.match(rf"{name} \S+{name}\.yaml: invalid YAML: ", _message(exc, fn, p))


@dataclass
class _Inner:
    n: Annotated[int, at_least(1)] = 1
    mode: Literal["a", "b"] = "a"


@dataclass
class _Doc:
    name: str
    inner: Optional[_Inner] = None
    flag: Union[Literal[False], float, None] = None
    tags: list[str] = field(default_factory=list)


def test_build_types_fields_and_names_paths() -> None:
    doc = build(_Doc, {"name": "x", "inner": {"n": "3", "mode": "b"}, "flag": 0.5, "tags": ["p"]})
    assert doc == _Doc("x", _Inner(3, "b"), 0.5, ["p"])
    with pytest.raises(SchemaError, match=r"^name: missing required key$"):
        build(_Doc, {})
    with pytest.raises(SchemaError, match=r"^doc\.inner\.n: expected an integer >= 1, got 0$"):
        build(_Doc, {"name": "x", "inner": {"n": 0}}, "doc")
    with pytest.raises(SchemaError, match=r"^inner\.mdoe: unknown key \(did you mean 'inner\.mode'\?\)$"):
        build(_Doc, {"name": "x", "inner": {"mdoe": "b"}})  # the nested error wins over "expected a mapping or null"
    with pytest.raises(SchemaError, match=r"^inner\.mode: expected one of a, b, got 'c'$"):
        build(_Doc, {"name": "x", "inner": {"mode": "c"}})
    with pytest.raises(SchemaError, match=r"^tags\[1\]: expected a string, got 2$"):
        build(_Doc, {"name": "x", "tags": ["a", 2]})


def test_scalars_are_strict_about_kind_but_read_yaml_number_strings() -> None:
    assert coerce("1e-4", float) == pytest.approx(1e-4)  # YAML 1.1 reads 1e-4 as a string
    assert coerce(2.0, int) == 2 and coerce("1_000", int) == 1000
    with pytest.raises(SchemaError, match="expected an integer, got True"):
        coerce(True, int, "k")
    with pytest.raises(SchemaError, match="expected a string, got 2024"):
        coerce(2024, str, "k")  # quote it in YAML
    assert coerce(2024, str, "k", text=True) == "2024"  # a --set value is text anyway
    with pytest.raises(SchemaError, match="expected false, an integer >= 1 or null, got 0"):
        coerce(0, Union[Literal[False], Annotated[float, at_least(1)], None], "k")  # 0 is not false
    assert coerce(False, Union[Literal[False], float, None], "k") is False
    assert coerce("none", Optional[int], "k") is None


def test_text_mode_lists_and_merge_into_defaults() -> None:
    assert coerce("0.9, 0.95", list[float], "betas", text=True) == [0.9, 0.95]
    assert coerce(0.9, list[float], "betas", text=True) == [0.9]
    with pytest.raises(SchemaError, match="expected a list of numbers, got '0.9,0.95'"):
        coerce("0.9,0.95", list[float], "betas")  # a YAML file writes a list
    doc = _Doc("x", _Inner(5))
    merge(doc, {"inner": {"mode": "b"}, "tags": ["t"]})
    assert doc == _Doc("x", _Inner(5, "b"), None, ["t"])


def test_read_yaml_is_safe(tmp_path: Path) -> None:
    p = tmp_path / "x.yaml"
    p.write_text("a: !!python/object/apply:os.system ['echo hi']\n")
    with pytest.raises(SchemaError, match="invalid YAML"):
        read_yaml(p)
    with pytest.raises(FileNotFoundError):
        read_yaml(tmp_path / "missing.yaml")
