"""Loading ontologies from YAML files or the packaged default (``echoatlas.yaml``)."""

from __future__ import annotations

import functools
import logging
from importlib import resources
from pathlib import Path

from echocare.ontology.errors import OntologyError
from echocare.ontology.ontology import Ontology
from echocare.typed import SchemaError, read_yaml

logger = logging.getLogger(__name__)

DEFAULT_ONTOLOGY = "echoatlas.yaml"


def load_ontology(path: str | Path | None = None) -> Ontology:
    """Load and validate an ontology.

    Args:
        path: a YAML file; ``None`` loads the packaged default ``echoatlas.yaml``.

    Returns:
        The validated :class:`Ontology` (a fresh object each call is not guaranteed: results are
        cached per resolved path and file modification time; ontologies are read-only).

    Raises:
        FileNotFoundError: the file does not exist.
        OntologyError: the YAML is malformed or fails validation (message names the node / key).
    """
    if path is None:
        ref = resources.files("echocare.ontology").joinpath(DEFAULT_ONTOLOGY)
        with resources.as_file(ref) as default_path:
            return _load_cached(str(default_path), default_path.stat().st_mtime_ns)
    file = Path(path).expanduser()
    if not file.is_file():
        raise FileNotFoundError(f"ontology file not found: {file}")
    return _load_cached(str(file.resolve()), file.stat().st_mtime_ns)


@functools.lru_cache(maxsize=16)
def _load_cached(path: str, mtime_ns: int) -> Ontology:
    try:
        doc = read_yaml(path)
    except SchemaError as err:
        raise OntologyError(f"ontology {path}: {err}") from None
    onto = Ontology.from_dict(doc, source=path)
    logger.debug("loaded %r from %s (hash %s)", onto, path, onto.hash[:12])
    return onto
