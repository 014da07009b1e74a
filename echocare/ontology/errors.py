"""Exceptions raised by the ontology package."""

from __future__ import annotations

from echocare.errors import UserError


class OntologyError(UserError, ValueError):
    """An ontology definition or a label path is invalid.

    The message always names the offending node, key or path.
    """


class UnknownNodeError(OntologyError, KeyError):
    """A node id / synonym / label path is not in the ontology.

    It is both a ``ValueError`` (bad label input) and a ``KeyError`` (failed lookup), so callers may
    catch either.
    """

    def __str__(self) -> str:  # KeyError would repr() the message; keep it readable.
        return str(self.args[0]) if self.args else ""
