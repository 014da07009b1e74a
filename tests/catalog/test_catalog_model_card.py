"""echocare.catalog.model_card: markdown card with data licences, config, evaluation, SonoMQS."""

from __future__ import annotations

import pytest

from echocare.catalog import SONOMQS_CRITERIA
from echocare.catalog.model_card import model_card, sonomqs_criteria

SOURCES = [{"name": "busi", "samples": 4, "licence": "unknown", "catalogue_id": "busi", "access": "open",
            "url": "https://www.kaggle.com/datasets/aryashah2k/breast-ultrasound-images-dataset"},
           {"name": "hc18", "samples": 3, "licence": "CC-BY-4.0", "catalogue_id": "hc18", "access": "open",
            "url": "https://doi.org/10.5281/zenodo.1327317"}]
CONFIG = {"model": {"name": "echocare_swin_debug"}, "train": {"max_steps": 10}}
SOFTWARE = {"echocare": "0.1.0", "torch": "2", "timm": "1"}


def test_card_without_statements() -> None:
    text, crit = model_card(CONFIG, SOURCES, None, {}, software=SOFTWARE)
    assert list(crit) == list(SONOMQS_CRITERIA)
    assert crit["training_data_public"] and crit["training_details"] and crit["software_citations"]
    assert not crit["weights_public"] and not crit["code_shared"] and not crit["funding_statement"]
    assert sum(crit.values()) == 3 and "SonoMQS = 3/12 = 0.25" in text
    assert "| hc18 | 3 | CC-BY-4.0 | open | hc18 |" in text and "max_steps: 10" in text
    assert "_not evaluated_" in text


def test_statements_and_uncatalogued_source() -> None:
    statements = {"objective": "breast lesion pretraining", "funding": "none", "ethics": "public data only",
                  "competing_interests": "none", "authors": "A. B.", "contributions": "A. B. did all",
                  "weights_public": True}
    own = SOURCES + [{"name": "hospital_x", "samples": 9, "licence": "unknown", "catalogue_id": None}]
    text, crit = model_card(CONFIG, own, {"dice": 0.81}, {"repository": "https://example.org/code"},
                            statements, software=SOFTWARE)
    assert not crit["training_data_public"]  # a private, uncatalogued source
    assert sum(crit.values()) == 11 and "| dice | 0.81 |" in text and "not catalogued" in text
    assert "https://example.org/code" in text and "breast lesion pretraining" in text
    assert not sonomqs_criteria({}, [], {}, {})["training_data_public"]  # no known source is not "public"
    with pytest.raises(ValueError, match="unknown model-card statement"):
        model_card(CONFIG, SOURCES, None, {}, {"budget": "1"}, software=SOFTWARE)


def test_data_sources_from_shards(tmp_path, replica) -> None:
    import yaml

    from echocare.catalog import load_catalog, manifest_for
    from echocare.catalog.model_card import data_sources_from_shards, export_model_card
    from echocare.data.build import build_shards

    cat = load_catalog()
    replica.image(tmp_path / "hc18/training_set/001_HC.png", 1)
    replica.image(tmp_path / "own/a.png", 2)
    replica.image(tmp_path / "own/b.png", 3)
    doc = manifest_for(cat, "hc18", tmp_path / "hc18")
    doc["datasets"].append({"name": "my_hospital", "root": str(tmp_path / "own"), "label": "thorax/breast",
                            "metadata": {"licence": "CC0-1.0"}})
    (tmp_path / "m.yaml").write_text(yaml.safe_dump(doc))
    build_shards(tmp_path / "m.yaml", tmp_path / "shards")
    rows = {r["name"]: r for r in data_sources_from_shards(tmp_path / "shards", cat)}
    assert rows["hc18"]["licence"] == "CC-BY-4.0" and rows["hc18"]["catalogue_id"] == "hc18"
    assert rows["hc18"]["samples"] == 1 and rows["hc18"]["url"].startswith("https://doi.org/")
    assert rows["my_hospital"] == {"name": "my_hospital", "samples": 2, "licence": "CC0-1.0", "catalogue_id": None,
                                   "access": "unknown", "url": "unknown"}
    with pytest.raises(FileNotFoundError, match="index.json"):
        data_sources_from_shards(tmp_path / "own", cat)

    run = tmp_path / "run"
    run.mkdir()
    (run / "model_card.yaml").write_text(yaml.safe_dump({"authors": "A. B.", "code_repository": "https://example.org",
                                                         "evaluation": {"dice": 0.8}}))
    path, crit = export_model_card({"data": {"shards": str(tmp_path / "shards")}}, run, tmp_path / "enc.safetensors",
                                   cat)
    text = path.read_text()
    assert path.name == "enc.model-card.md" and "| my_hospital | 2 | CC0-1.0 |" in text and "| dice | 0.8 |" in text
    assert crit["authorship"] and crit["code_shared"] and not crit["training_data_public"]
