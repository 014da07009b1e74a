"""SonoDQS (dataset quality score) and SonoMQS (model quality score), seed 001 §4.3.

SonoDQS scores how completely a dataset's *description* is shared, not the data: each characteristic
that is shared earns its weight, 2 for the summary-table characteristics and 1 for the detailed-table
ones, and the sum is divided by the total weight. Seed 001's eq. (2) divides by "the total number of
characteristics", but its own worked example, ((1 + 1) + 1 + 0) / 4 for three characteristics, divides
by the total weight; only that reading keeps a perfect score at 1.0, so it is the one implemented.

Tiers. The seed's final boundaries are inconsistent: "diamond >= 0.87" but "platinum < 0.875", and
"bronze < 0.5 and >= 0.45" under "silver >= 0.57" leaves [0.5, 0.57) in no tier. The text says the
ranges were meant to be wide and non-overlapping, and every tier's *lower* bound is stated once and
unambiguously, so this module reads the tiers as contiguous ranges closed below at the published lower
bounds (diamond 0.87, platinum 0.77, gold 0.67, silver 0.57, bronze 0.45, steel 0.32, unrated below):
every score lands in exactly one tier and no published lower bound moves.

SonoMQS: one point per "yes" to the 12 questions of seed 001 §4.3, divided by 12.
"""

from __future__ import annotations

from typing import Any

# seed 001 §4.1: the summary-table characteristics (numbered 1-12 and 14 in the seed; there is no 13)
SUMMARY_CHARACTERISTICS = ("name", "link", "anatomy", "scanning_mode", "multimodal_text_image", "total_size",
                           "split_sizes", "task_category", "geography", "acquisition_years",
                           "other_imaging_metadata", "machines_or_centres", "access")
# seed 001 §4.1: the detailed-table characteristics (the text says 19 and lists 20; all 20 are kept)
DETAIL_CHARACTERISTICS = ("devices", "acquisition_protocol", "collecting_centre", "acquirer_characteristics",
                          "split_characteristics", "sample_definition", "n_operators", "annotation_method",
                          "annotator_instructions", "annotation_description", "annotation_merging",
                          "application_cases", "ethics_approval", "data_usage_agreement", "challenge",
                          "imaging_modalities", "spatial_context", "subject_details", "doppler", "b_mode")
WEIGHTS = {**{c: 2 for c in SUMMARY_CHARACTERISTICS}, **{c: 1 for c in DETAIL_CHARACTERISTICS}}
TOTAL_WEIGHT = sum(WEIGHTS.values())  # 13 * 2 + 20 = 46
TIER_LOWER_BOUNDS = (("diamond", 0.87), ("platinum", 0.77), ("gold", 0.67), ("silver", 0.57),
                     ("bronze", 0.45), ("steel", 0.32))

SONOMQS_CRITERIA = ("training_data_public", "weights_public", "code_shared", "training_details",
                    "study_objective", "funding_statement", "ethics_statement", "competing_interests",
                    "authorship", "contribution_statement", "code_availability_statement",
                    "software_citations")


def sonodqs_tier(score: float) -> str:
    """The tier of a SonoDQS in [0, 1] (contiguous ranges at the published lower bounds)."""
    if not 0.0 <= score <= 1.0:
        raise ValueError(f"SonoDQS must be in [0, 1], got {score}")
    for name, lower in TIER_LOWER_BOUNDS:
        if score >= lower:
            return name
    return "unrated"


def sonodqs(shared: dict[str, bool] | set[str] | list[str]) -> float:
    """Weighted completeness: sum of the weights of the shared characteristics / total weight.

    Args:
        shared: the characteristics that are shared (a collection of names, or name -> bool).

    Raises:
        ValueError: a name that is not a SonoDQS characteristic.
    """
    names = [k for k, v in shared.items() if v] if isinstance(shared, dict) else list(shared)
    for n in names:
        if n not in WEIGHTS:
            raise ValueError(f"{n!r} is not a SonoDQS characteristic; see echocare.catalog.scores.WEIGHTS")
    return sum(WEIGHTS[n] for n in set(names)) / TOTAL_WEIGHT


def entry_characteristics(entry: Any) -> dict[str, bool]:
    """Which characteristics a catalogue entry records (known fields, plus its explicit ``shared`` list).

    A characteristic counts as shared only when the catalogue holds its value (or names it in
    ``shared``), so the computed SonoDQS is a lower bound of what the dataset's publishers share: seed 001
    scored from its full webpage table, which the seeds do not reproduce.
    """
    u = "unknown"
    known_modality = bool(entry.modality)
    derived = {
        "name": True,
        "link": entry.url != u,
        "anatomy": bool(entry.anatomy) or entry.anatomy_text != u,
        "scanning_mode": entry.scanning_mode != u,
        "multimodal_text_image": entry.multimodal != u,
        "total_size": bool(entry.size),
        "split_sizes": bool(entry.splits),
        "task_category": bool(entry.tasks),
        "geography": bool(entry.countries),
        "acquisition_years": entry.years != u,
        "other_imaging_metadata": bool(entry.other_data),
        "machines_or_centres": bool(entry.devices) or bool(entry.centres),
        "access": entry.access != u,
        "devices": bool(entry.devices),
        "collecting_centre": bool(entry.centres),
        "annotation_description": bool(entry.labels),
        "data_usage_agreement": entry.licence != u,
        "challenge": entry.challenge != u,
        "imaging_modalities": known_modality,
        "doppler": known_modality,
        "b_mode": known_modality,
    }
    out = {c: bool(derived.get(c, False)) for c in WEIGHTS}
    for c in entry.shared:
        out[c] = True
    return out


def entry_sonodqs(entry: Any) -> dict[str, Any]:
    """``{"score", "tier", "published_tier", "shared", "missing"}`` for a catalogue entry."""
    ch = entry_characteristics(entry)
    score = sonodqs(ch)
    return {"score": round(score, 4), "tier": sonodqs_tier(score), "published_tier": entry.published_tier,
            "shared": [c for c, v in ch.items() if v], "missing": [c for c, v in ch.items() if not v]}


def sonomqs(criteria: dict[str, bool]) -> float:
    """SonoMQS: the number of "yes" answers among the 12 criteria, divided by 12.

    Raises:
        ValueError: a criterion is missing, unknown, or not a bool.
    """
    unknown = set(criteria) - set(SONOMQS_CRITERIA)
    missing = set(SONOMQS_CRITERIA) - set(criteria)
    if unknown or missing:
        raise ValueError(f"SonoMQS criteria mismatch: unknown {sorted(unknown)}, missing {sorted(missing)}")
    for k, v in criteria.items():
        if not isinstance(v, bool):
            raise ValueError(f"SonoMQS criterion {k!r} must be true or false, got {v!r}")
    return sum(criteria.values()) / len(SONOMQS_CRITERIA)
