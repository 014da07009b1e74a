"""echocare.catalog.catalog: the packaged catalogue covers the seeds' tables and is validated on load."""

from __future__ import annotations

import copy

import pytest
import yaml

from echocare.catalog import CatalogError, load_catalog, parse_catalog
from echocare.catalog.catalog import LICENCES
from echocare.ontology import load_ontology

# seed 001 Table 1 (72 rows), as the table names them
SEED001 = [
    "FETAL PLANES DB", "RESECT", "DDTI", "Ultrasound Nerve Segmentation", "Ultrasound Image Enhancement", "TMED",
    "COVIDx-US", "Open Kidney", "FPUS23", "Thyroid Ultrasound Cine-clip",
    "Reconstructing of 2D Ultrasound (US) Images into a 3D Volume",
    "Fetal Abdominal Structures Segmentation Dataset Using Ultrasonic Images", "EchoNet-Dynamic", "FALLMUD",
    "Micro-Ultrasound Prostate Segmentation Dataset", "CAMUS", "EchoNet-LVH", "Regensburg Pediatric Appendicitis",
    "GBUSV", "GBCU", "BUSV", "deepMTJ", "Breast Ultrasound Images Dataset", "BITE",
    "Dermatologic Ultrasound Images for Classification", "polycystic_ovary_telkom", "CUBS", "knee_cohort",
    "BioBank 20222", "ReMIND2Reg", "ReMIND", "HC18", "KFGNet", "BUSIS", "us_elastography", "TUS-REC",
    "Breast Ultrasound B dataset", "Thyroid", "CCA", "Chinese Ultrasound Report Dataset", "GDPH & SYSUCC",
    "STU-Hospital", "mu-Reg", "mu-RegPro", "UCLA", "LEPset", "geometric_ulm", "BioBank Carotid 30005",
    "COVID-BLUES", "POCUS", "MIMIC-IV-ECHO", "UGRA", "Unity Imaging Collaborative", "C-TRUS", "ACOUSLIC-AI",
    "PCOSGen", "B-mode-and-CEUS-Liver", "BEHSOF", "LUMINOUS", "liver_ultrasound",
    "Dataset of B-mode fatty liver ultrasound images", "Annotated Ultrasound Liver images Dataset", "TED",
    "BUS-BRA", "TN5000", "CACTUS", "POCUS LUS Datasets", "mouse_brain_tumor",
    "Dataset of 3D Ultrasound Neuroimages", "lung_disease_uganda", "normal_kidney_roboflow", "FOCUS"]
# seed 003 Table 5 (76 rows), short names
SEED003 = ["UIC", "CARDIAC", "CardiacUDA", "BUSI", "UBIBC", "US3M", "LRHR", "2ULM", "BrEaST", "MBUD", "UDIAT",
           "OMI", "BUET", "BUSI_WHU", "STU", "BUDataset", "LOGIQ", "JNU", "HC18", "DVD", "PSFHS", "CAUCD", "HR",
           "USL", "S", "AULI", "AUITD", "OpenCAS", "TN3K", "ThySeg", "UIH", "DUI", "SPJ", "Butterfly", "TFFPU",
           "KUI", "NDF", "UNS", "UI", "DUPI", "TDUPI", "PCOS", "2000", "OCD", "MMOTU", "EBUS", "3VG", "FUCD",
           "ReMIND2Reg", "CuRIOUS", "CAT", "CC", "MUPSD", "TRUS", "SPLOA", "LN", "PAD", "TUS", "AA",
           "FetalAbdomenSeg", "PMUB", "LEP", "BBDTD", "CoA", "MVSeg", "ArteryUS", "ERUS", "UBPD", "LUMINOUS",
           "FETALPLANE", "MUST", "DeepACSA", "FALLMUD", "ATD", "Leg-3D-US", "SlicerIGT"]


@pytest.fixture(scope="module")
def cat():
    return load_catalog()


@pytest.fixture(scope="module")
def raw():
    from importlib import resources

    return yaml.safe_load(resources.files("echocare.catalog").joinpath("datasets.yaml").read_text())


def test_every_seed_table_row_is_one_entry(cat) -> None:
    assert len(SEED001) == 72 and len(SEED003) == 76
    s001 = {cat.get(n).id for n in SEED001}
    s003 = {cat.get(n).id for n in SEED003}
    assert len(s001) == 72 and len(s003) == 76  # no two rows collapse into one entry by mistake
    assert all("s001-T1" in cat.get(n).sources for n in SEED001)
    assert all("s003-T5" in cat.get(n).sources for n in SEED003)
    merged = s001 & s003  # duplicates across the seeds are one entry (BUSI, HC18, FETAL PLANES DB, ...)
    assert {"busi", "hc18", "fetal_planes_db", "resect", "ultrasound_nerve_segmentation"} <= merged
    assert len(cat) == len(s001 | s003) + 4  # + MusV, AbdomenUS, SYSU-FLL-CEUS, BrainLandmark (seed 003 T1)


def test_values_from_the_seeds_and_unknown_otherwise(cat) -> None:
    busi = cat.get("Dataset_BUSI_with_GT")
    assert busi.published_tier == "bronze" and busi.access == "open" and busi.countries == ["EG"]
    assert busi.size == {"images": 1707, "patients": 600, "reported_total": 780}
    assert busi.licence == "unknown"  # the seeds name no licence for BUSI: not guessed
    assert cat.get("ACOUSLIC-AI").licence == "CC-BY-NC-SA-4.0"  # seed 001 ref. 116
    assert cat.get("resect").countries == ["NO"]  # an unquoted NO in YAML would be False
    assert cat.get("fatty_liver_byra").published_tier == "diamond"
    onto = load_ontology()
    for e in cat:
        assert all(a in onto.names for a in e.anatomy), e.id
        assert e.licence in LICENCES + ("unknown",), e.id
        d = e.to_dict()
        assert d["url"] and d["licence"] and d["access"] in ("open", "on_request", "unknown")


def _bad(raw, **change) -> dict:
    doc = copy.deepcopy(raw)
    doc["datasets"][0].update(change)
    return doc


@pytest.mark.parametrize("change, message", [
    ({"anatomy": ["thorax/breasts"]}, "is not an ontology node id"),
    ({"anatomy": ["thyroid gland"]}, "did you mean 'head_neck/thyroid'"),
    ({"licence": "CC-BY"}, "licence: unknown value 'CC-BY'"),
    ({"countries": [False]}, 'write "NO"'),
    ({"access": "public"}, "access: unknown value"),
    ({"tasks": ["segmentaton"]}, "tasks: unknown value"),
    ({"colour": "red"}, "unknown key 'colour'"),
    ({"size": {"images": -3}}, "expected a count"),
    ({"url": "zenodo.org/x"}, "expected an http(s) URL"),
    ({"aliases": ["BUSI"]}, "alias 'busi' is already used"),
])
def test_validation_names_entry_and_key(raw, change, message) -> None:
    with pytest.raises(CatalogError, match="fetal_planes_db") as err:
        parse_catalog(_bad(raw, **change))
    assert message in str(err.value)


def test_filters(cat) -> None:
    prostate = {e.id for e in cat.filter(anatomy="pelvis/prostate")}
    assert {"micro_us_prostate", "mu_reg", "mu_regpro", "prostate_mri_us_biopsy"} <= prostate
    assert all(any(a.startswith("pelvis/prostate") for a in cat.get(i).anatomy) for i in prostate)
    seg = cat.filter(task="segmentation")
    assert seg and all("segmentation" in e.tasks for e in seg)
    assert [e.id for e in cat.filter(licence="cc-by-4.0")] == ["hc18"]
