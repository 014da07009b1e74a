"""echocare.catalog.gaps: anatomies with few or no public datasets, table and bar plot."""

from __future__ import annotations

from PIL import Image

from echocare.catalog import coverage, format_gaps, gaps, load_catalog, plot_coverage
from echocare.ontology import load_ontology


def test_coverage_counts_datasets_at_or_below_each_node() -> None:
    cat, onto = load_catalog(), load_ontology()
    cov = coverage(cat, onto)
    assert "busi" in cov["thorax/breast"] and "busi" in cov["thorax"]  # ancestors count their descendants
    assert "busi" not in cov["thorax/heart"]
    # seed 001 names fetal (5) and prostate (4) as scarce; the pooled catalogue still has few prostate sets
    assert 4 <= len(cov["pelvis/prostate"]) <= 6
    rows = gaps(cat, onto, level=1, few=2)
    assert rows == sorted(rows, key=lambda r: (r["datasets"], r["node"]))
    assert all(r["datasets"] <= 2 and r["level"] == 1 for r in rows)
    stomach = next(r for r in rows if r["node"] == "abdomen/stomach")  # reserved node: no public dataset
    assert stomach["datasets"] == 0 and stomach["ids"] == []
    assert "thorax/breast" not in {r["node"] for r in rows}
    assert "abdomen/stomach" in format_gaps(rows)


def test_bar_plot(tmp_path) -> None:
    out = plot_coverage(load_catalog(), load_ontology(), tmp_path / "g" / "gaps.png", level=0)
    with Image.open(out) as im:
        assert im.size[0] > 100 and im.size[1] > 100
