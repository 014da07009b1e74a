"""Anatomy ontology: part -> organ -> structure tree, validation, label encoding, hierarchy indices.

>>> from echocare.ontology import load_ontology
>>> onto = load_ontology()                      # packaged echoatlas.yaml
>>> onto.encode(["thorax/heart/a4c"], label_space=["thorax/heart/a2c"])  # (N,) in {1, 0, -1}
"""

from echocare.ontology.errors import OntologyError, UnknownNodeError
from echocare.ontology.loading import load_ontology
from echocare.ontology.ontology import LEVEL_NAMES, Ontology
from echocare.ontology.synthetic import random_ontology

__all__ = ["LEVEL_NAMES", "Ontology", "OntologyError", "UnknownNodeError", "load_ontology", "random_ontology"]
