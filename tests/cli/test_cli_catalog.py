"""``echocare catalog list|show|manifest|gaps``."""

from __future__ import annotations

import json

from PIL import Image

from echocare.cli import main


def test_list_json_has_anatomy_licence_url_and_sonodqs(capsys) -> None:
    assert main(["catalog", "list", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) >= 70
    for r in rows:
        assert {"anatomy", "licence", "url", "sonodqs"} <= set(r)
        assert {"score", "tier", "published_tier"} <= set(r["sonodqs"])
    busi = next(r for r in rows if r["id"] == "busi")
    assert busi["anatomy"][0] == "thorax/breast" and busi["url"].startswith("https://")


def test_list_filters_and_table(capsys) -> None:
    assert main(["catalog", "list", "--anatomy", "prostate", "--format", "json"]) == 0  # a synonym works
    ids = {r["id"] for r in json.loads(capsys.readouterr().out)}
    assert "micro_us_prostate" in ids and "busi" not in ids
    assert main(["catalog", "list", "--task", "enhancement"]) == 0
    out = capsys.readouterr().out
    assert "usenhance" in out and "busi" not in out and "dataset(s)" in out


def test_bad_filters_and_names_exit_2(capsys) -> None:
    assert main(["catalog", "list", "--anatomy", "thorax/breasts"]) == 2
    assert "unknown ontology path" in capsys.readouterr().err
    assert main(["catalog", "list", "--task", "painting"]) == 2
    assert main(["catalog", "show", "busy"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") >= 1 and "did you mean" in err and "busi" in err


def test_show_card(capsys) -> None:
    assert main(["catalog", "show", "Fetal Planes DB"]) == 0
    out = capsys.readouterr().out
    assert "fetal_planes_db" in out and "published: gold" in out and "FETAL_PLANES_DB_data.csv" in out


def test_manifest_errors_exit_2(tmp_path, capsys) -> None:
    assert main(["catalog", "manifest", "busi", "--root", str(tmp_path / "nope"), "--out", str(tmp_path / "m.yaml")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["catalog", "manifest", "camus", "--root", str(tmp_path), "--out", str(tmp_path / "m.yaml")]) == 2
    assert not (tmp_path / "m.yaml").exists()


def test_gaps_table_and_plot(tmp_path, capsys) -> None:
    plot = tmp_path / "gaps.png"
    assert main(["catalog", "gaps", "--few", "0", "--plot", str(plot)]) == 0
    out = capsys.readouterr().out
    assert "abdomen/stomach" in out and "thorax/breast" not in out
    with Image.open(plot) as im:
        assert im.format == "PNG"
    assert main(["catalog", "gaps", "--few", "-1", "--plot", str(plot)]) == 2
