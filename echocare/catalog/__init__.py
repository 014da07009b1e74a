"""EchoAtlas catalogue: public ultrasound datasets as data, SonoDQS / SonoMQS, manifest templates.

>>> from echocare.catalog import load_catalog, entry_sonodqs
>>> cat = load_catalog()
>>> entry_sonodqs(cat.get("BUSI"))["published_tier"]
'bronze'
"""

from echocare.catalog.catalog import Catalog, CatalogError, DatasetEntry, load_catalog, parse_catalog
from echocare.catalog.gaps import coverage, format_gaps, gaps, plot_coverage
from echocare.catalog.scores import (
    SONOMQS_CRITERIA,
    TOTAL_WEIGHT,
    WEIGHTS,
    entry_characteristics,
    entry_sonodqs,
    sonodqs,
    sonodqs_tier,
    sonomqs,
)
from echocare.catalog.templates import TEMPLATES, TemplateError, manifest_for

__all__ = ["Catalog", "CatalogError", "DatasetEntry", "SONOMQS_CRITERIA", "TEMPLATES", "TOTAL_WEIGHT",
           "TemplateError", "WEIGHTS", "coverage", "entry_characteristics", "entry_sonodqs", "format_gaps",
           "gaps", "load_catalog", "manifest_for", "parse_catalog", "plot_coverage", "sonodqs", "sonodqs_tier",
           "sonomqs"]
