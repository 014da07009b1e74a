"""echocare.catalog.scores: SonoDQS weighting and tiers, SonoMQS (seed 001 §4.3)."""

from __future__ import annotations

from collections import Counter

import pytest

from echocare.catalog import (
    SONOMQS_CRITERIA,
    TOTAL_WEIGHT,
    WEIGHTS,
    entry_sonodqs,
    load_catalog,
    sonodqs,
    sonodqs_tier,
    sonomqs,
)
from echocare.catalog.scores import DETAIL_CHARACTERISTICS, SUMMARY_CHARACTERISTICS


def test_summary_characteristics_weigh_twice() -> None:
    assert len(SUMMARY_CHARACTERISTICS) == 13 and len(DETAIL_CHARACTERISTICS) == 20
    assert TOTAL_WEIGHT == 46
    assert sonodqs(["name"]) == pytest.approx(2 / 46)
    assert sonodqs(["devices"]) == pytest.approx(1 / 46)
    assert sonodqs({"name": True, "devices": True, "ethics_approval": False}) == pytest.approx(3 / 46)
    assert sonodqs(list(WEIGHTS)) == 1.0 and sonodqs([]) == 0.0
    with pytest.raises(ValueError, match="not a SonoDQS characteristic"):
        sonodqs(["colour"])


@pytest.mark.parametrize("score, tier", [
    (1.0, "diamond"), (0.87, "diamond"), (0.8699, "platinum"), (0.77, "platinum"), (0.7699, "gold"),
    (0.67, "gold"), (0.57, "silver"), (0.5699, "bronze"),
    (0.5, "bronze"),   # in no published range (bronze "< 0.5", silver ">= 0.57"): the gap joins bronze
    (0.45, "bronze"), (0.4499, "steel"), (0.32, "steel"), (0.3199, "unrated"), (0.0, "unrated"),
])
def test_tiers_are_contiguous_at_the_published_lower_bounds(score, tier) -> None:
    assert sonodqs_tier(score) == tier


def test_tier_rejects_out_of_range() -> None:
    with pytest.raises(ValueError):
        sonodqs_tier(1.2)


def test_catalogue_scores_keep_the_published_tier_beside_the_computed_one() -> None:
    cat = load_catalog()
    busi = entry_sonodqs(cat.get("busi"))
    assert busi["published_tier"] == "bronze" and busi["tier"] == sonodqs_tier(busi["score"])
    assert set(busi["shared"]) | set(busi["missing"]) == set(WEIGHTS)
    assert busi["score"] == pytest.approx(sonodqs(busi["shared"]), abs=1e-4)
    assert {"name", "link", "anatomy", "total_size", "access", "devices", "geography"} <= set(busi["shared"])
    # seed 001: "a plurality of the datasets ... corresponding to bronze"
    published = Counter(e.published_tier for e in cat if "s001-T1" in e.sources)
    assert published.most_common(1)[0][0] == "bronze" and sum(published.values()) == 72


def test_sonomqs_counts_yes_over_twelve() -> None:
    yes = dict.fromkeys(SONOMQS_CRITERIA, True)
    assert len(SONOMQS_CRITERIA) == 12 and sonomqs(yes) == 1.0
    some = {k: i < 9 for i, k in enumerate(SONOMQS_CRITERIA)}
    assert sonomqs(some) == 0.75
    with pytest.raises(ValueError, match="missing"):
        sonomqs({k: True for k in SONOMQS_CRITERIA[:11]})
    with pytest.raises(ValueError, match="true or false"):
        sonomqs({**yes, "authorship": "yes"})
