"""Shards-manifest entries for public datasets in their published folder layouts.

``manifest_for(catalog, "busi", root)`` returns a manifest document (see ``docs/data.md``) that
``echocare shards build`` reads as is: include / exclude globs that keep masks and annotation files
out of the pretraining images, label rules from the dataset's class folders, file names or label CSV to
ontology nodes, a group regex for patients where the file names carry one, and metadata (modality,
country, licence, catalogue id, URL) from the catalogue entry.

The layouts are those of each dataset's public release as this module describes them in ``LAYOUT``
(the seeds give no layouts; they are this catalogue's reading of the releases, see docs/catalog.md).
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from echocare.catalog.catalog import Catalog, DatasetEntry
from echocare.data.sources import list_files
from echocare.errors import UserError

_IMAGES = ["**/*.png", "**/*.jpg", "**/*.jpeg", "**/*.bmp", "**/*.tif", "**/*.tiff"]
_VIDEOS = ["**/*.mp4", "**/*.avi", "**/*.mov", "**/*.mpeg", "**/*.mpg"]


class TemplateError(UserError, ValueError):
    """The root does not hold the dataset's published layout (the message says what was expected)."""


@dataclass(frozen=True)
class Template:
    """How to turn one dataset's published layout into manifest entries."""

    dataset: str                                   # catalogue id
    layout: str                                    # the expected folder layout, for users and docs
    build: Callable[[Path], list[dict[str, Any]]]  # root -> manifest dataset entries (without metadata)


def _busi(root: Path) -> list[dict[str, Any]]:
    return [{"name": "busi", "kind": "images", "include": ["**/*.png"], "exclude": ["**/*_mask*.png"],
             "labels": [{"folder": "benign", "path": "thorax/breast/lesion"},
                        {"folder": "malignant", "path": "thorax/breast/lesion"},
                        {"folder": "normal", "path": "thorax/breast/parenchyma"}],
             "label": "thorax/breast"}]


def _ddti(root: Path) -> list[dict[str, Any]]:
    return [{"name": "ddti", "kind": "images", "include": ["**/*.jpg", "**/*.png"],
             "label": "head_neck/thyroid/nodule", "group_regex": r"(?:^|/)(?P<group>\d+)_\d+\.(?:jpg|png)$"}]


def _hc18(root: Path) -> list[dict[str, Any]]:
    return [{"name": "hc18", "kind": "images", "include": ["**/*.png"], "exclude": ["**/*_Annotation.png"],
             "label": "fetus/brain/transthalamic",
             "group_regex": r"(?P<group>(?:[^/]+/)*\d+)_\d*HC\.png$"}]


def _echonet_dynamic(root: Path) -> list[dict[str, Any]]:
    return [{"name": "echonet_dynamic", "kind": "video", "include": ["Videos/*.avi", "Videos/*.mp4"],
             "label": "thorax/heart/a4c"}]


def _pocus(root: Path) -> list[dict[str, Any]]:
    return [{"name": "pocus_covid_images", "kind": "images", "include": [f"pocus_images/{g}" for g in _IMAGES],
             "label": "thorax/lung"},
            {"name": "pocus_covid_videos", "kind": "video", "include": [f"pocus_videos/{g}" for g in _VIDEOS],
             "label": "thorax/lung"}]


def _tn3k(root: Path) -> list[dict[str, Any]]:
    return [{"name": "tn3k", "kind": "images", "include": ["*-image/*.jpg", "*-image/*.png"],
             "exclude": ["*-mask/**"], "label": "head_neck/thyroid/nodule"}]


FETAL_PLANES_CSV = "FETAL_PLANES_DB_data.csv"
FETAL_PLANES = {"Fetal abdomen": "fetus/abdomen", "Fetal femur": "fetus/femur", "Fetal thorax": "fetus/thorax",
                "Maternal cervix": "pelvis/cervix", "Fetal brain": "fetus/brain", "Other": "fetus"}
FETAL_BRAIN_PLANES = {"Trans-thalamic": "fetus/brain/transthalamic", "Trans-cerebellum": "fetus/brain/transcerebellar",
                      "Trans-ventricular": "fetus/brain/transventricular"}


def _fetal_planes(root: Path) -> list[dict[str, Any]]:
    """Label rules from the release's CSV (``Image_name;Patient_num;Plane;Brain_plane;...``)."""
    table = root / FETAL_PLANES_CSV
    if not table.is_file():
        raise TemplateError(f"{table} not found: FETAL_PLANES_DB keeps the plane of every image in "
                            f"{FETAL_PLANES_CSV} next to Images/")
    by_path: dict[str, list[str]] = {}
    with table.open(newline="", encoding="utf-8-sig") as f:
        rows = list(csv.DictReader(f, delimiter=";"))
    for i, row in enumerate(rows, start=2):
        name, plane = (row.get("Image_name") or "").strip(), (row.get("Plane") or "").strip()
        if not name or plane not in FETAL_PLANES:
            raise TemplateError(f"{table} line {i}: expected Image_name and a Plane in "
                                f"{', '.join(FETAL_PLANES)}, got {name!r}, {plane!r}")
        path = FETAL_PLANES[plane]
        if plane == "Fetal brain":
            path = FETAL_BRAIN_PLANES.get((row.get("Brain_plane") or "").strip(), path)
        by_path.setdefault(path, []).append(re.escape(name))
    rules = [{"regex": rf"^Images/(?:{'|'.join(names)})\.png$", "path": path} for path, names in sorted(by_path.items())]
    return [{"name": "fetal_planes_db", "kind": "images", "include": ["Images/*.png"], "labels": rules,
             "group_regex": r"Patient(?P<group>\d+)_"}]


def _open_kidney(root: Path) -> list[dict[str, Any]]:
    return [{"name": "open_kidney", "kind": "images", "include": [f"images/{g}" for g in _IMAGES],
             "exclude": ["**/*mask*/**", "**/*label*/**"], "label": "abdomen/kidney"}]


def _nerve(root: Path) -> list[dict[str, Any]]:
    return [{"name": "ultrasound_nerve_segmentation", "kind": "images", "include": ["train/*.tif", "test/*.tif"],
             "exclude": ["**/*_mask.tif"], "label": "upper_limb/nerve/brachial_plexus",
             "group_regex": r"^train/(?P<group>\d+)_\d+\.tif$"}]


def _bus_bra(root: Path) -> list[dict[str, Any]]:
    return [{"name": "bus_bra", "kind": "images", "include": ["Images/*.png"], "exclude": ["Masks/**"],
             "label": "thorax/breast/lesion", "group_regex": r"bus_(?P<group>\d+)-[a-z]+\.png$"}]


def _udiat(root: Path) -> list[dict[str, Any]]:
    return [{"name": "udiat", "kind": "images", "include": ["original/*.png"], "exclude": ["GT/**"],
             "label": "thorax/breast/lesion"}]


TEMPLATES: dict[str, Template] = {t.dataset: t for t in (
    Template("busi", "Dataset_BUSI_with_GT/{benign,malignant,normal}/'benign (1).png' with 'benign (1)_mask.png' "
             "(and '_mask_1.png' ...) side by side", _busi),
    Template("ddti", "flat folder of '<case>_<n>.jpg' images with one '<case>.xml' annotation per case", _ddti),
    Template("hc18", "training_set/'NNN_HC.png' + 'NNN_HC_Annotation.png' (second image of a subject "
             "'NNN_2HC.png'), test_set/'NNN_HC.png', pixel-size CSVs", _hc18),
    Template("echonet_dynamic", "EchoNet-Dynamic/Videos/<FileName>.avi, FileList.csv, VolumeTracings.csv", _echonet_dynamic),
    Template("pocus_covid", "covid19_ultrasound/data: pocus_images/{convex,linear}/*.{png,jpg} and "
             "pocus_videos/{convex,linear}/*.{mp4,avi,mov,mpeg} (GIF clips are not read)", _pocus),
    Template("tn3k", "tn3k/{trainval,test}-image/NNNN.jpg with {trainval,test}-mask/NNNN.jpg, "
             "tn3k-trainval-fold*.json", _tn3k),
    Template("fetal_planes_db", "FETAL_PLANES_ZENODO/Images/PatientNNNNN_PlaneK_i_of_n.png and "
             "FETAL_PLANES_DB_data.csv (Image_name;Patient_num;Plane;Brain_plane;Operator;US_Machine;Train)",
             _fetal_planes),
    Template("open_kidney", "images/*.png with labels/ (reviewed masks) and a metadata CSV", _open_kidney),
    Template("ultrasound_nerve_segmentation", "train/'<subject>_<n>.tif' with train/'<subject>_<n>_mask.tif', "
             "test/'<n>.tif', train_masks.csv", _nerve),
    Template("bus_bra", "BUSBRA/Images/bus_NNNN-{l,r,s}.png, BUSBRA/Masks/mask_NNNN-*.png, bus_data.csv", _bus_bra),
    Template("udiat", "Dataset B: original/NNNNNN.png with GT/NNNNNN.png, DatasetB.xlsx", _udiat),
)}


def _metadata(entry: DatasetEntry) -> dict[str, Any]:
    meta: dict[str, Any] = {"licence": entry.licence}
    if len(entry.modality) == 1:
        meta["modality"] = entry.modality[0]
    if entry.countries:
        meta["country"] = ",".join(entry.countries)
    if entry.devices:
        meta["device"] = "; ".join(entry.devices)
    meta["extra"] = {"catalogue_id": entry.id, "url": entry.url, "access": entry.access}
    return meta


def _count(root: Path, include: list[str], exclude: list[str]) -> int:
    return len(list_files(root, include, exclude))


def manifest_for(catalog: Catalog, name: str, root: str | Path, image_size: int = 256) -> dict[str, Any]:
    """A shards manifest for one catalogue dataset in its published layout under ``root``.

    Args:
        catalog: the catalogue (for the entry's metadata).
        name: id, name or alias of the dataset.
        root: the folder the release was unpacked to (as in ``TEMPLATES[id].layout``).
        image_size: the manifest's ``image_size``.

    Raises:
        KeyError: unknown dataset.
        TemplateError: no template for the dataset, missing root, or no image of the layout under it.
    """
    entry = catalog.get(name)
    tpl = TEMPLATES.get(entry.id)
    if tpl is None:
        raise TemplateError(f"no manifest template for {entry.id!r}; templates exist for {', '.join(sorted(TEMPLATES))}")
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise TemplateError(f"root folder {str(root)!r} does not exist")
    datasets = []
    for d in tpl.build(root):  # a part of the layout with no file (e.g. no videos) is left out
        if _count(root, d["include"], d.get("exclude", [])):
            datasets.append({"name": d.pop("name"), "root": str(root), **d, "metadata": _metadata(entry)})
    if not datasets:
        raise TemplateError(f"{root} holds no {entry.id} input; expected the published layout: {tpl.layout}")
    return {"image_size": image_size, "datasets": datasets}


def has_template(entry: DatasetEntry) -> bool:
    """Whether ``catalog manifest`` covers this dataset."""
    return entry.id in TEMPLATES
