"""One typed way to read YAML: dataclass schemas, one coercion layer, one error style.

Run configs (:mod:`echocare.config`), shard manifests (:mod:`echocare.data.manifest`) and ontologies
(:mod:`echocare.ontology.schema`) describe their documents as dataclasses and read them through this
module, so a key has the same types and the same error everywhere::

    train.max_stpes: unknown key (did you mean 'train.max_steps'?)
    datasets[2].include: expected a string or a list of strings, got {'a': 1}
    nodes[4].level: expected an integer >= 0 or null, got True (node 'a/b')

Every error is a :class:`SchemaError` carrying the key path; each reader adds where the document
came from (``config FILE: ...``, ``manifest FILE: ...``, ``ontology FILE: ...``) and re-raises its own
exception type. Field types may be ``int``, ``float``, ``bool``, ``str``, ``list[T]``, ``dict``,
``Any``, ``Optional``/``Union``, ``Literal[...]``, another dataclass, or ``Annotated[T, Check(...)]``
for a value constraint. This is a leaf module: it imports nothing from echocare, so every package
may use it.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import types
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

import yaml

from echocare.errors import UserError

T = TypeVar("T")

NULL_STRINGS = ("null", "none", "~")
_TRUE = ("true", "yes", "on", "1")
_FALSE = ("false", "no", "off", "0")


class SchemaError(UserError, ValueError):
    """A document value does not fit its schema.

    Attributes:
        path: Key path of the offending value, e.g. ``"datasets[2].include"`` (``""`` = the document).
        reason: What is wrong, naming the offending value.
    """

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}" if path else reason)
        self.path = path
        self.reason = reason

    def with_note(self, note: str) -> SchemaError:
        """The same error with ``" (note)"`` appended, e.g. the name of the enclosing dataset."""
        return SchemaError(self.path, f"{self.reason} ({note})")


@dataclasses.dataclass(frozen=True)
class Check:
    """A value constraint for ``Annotated[T, Check(test, expected)]``.

    Attributes:
        test: Called with the coerced value; falsy means invalid.
        expected: What a valid value is, as a noun phrase ("an integer >= 1"); used in the error.
        plural: The plural phrase, for lists ("integers >= 1").
    """

    test: Callable[[Any], bool]
    expected: str
    plural: str = ""


def at_least(minimum: int) -> Check:
    """Integer lower bound: ``Annotated[int, at_least(1)]``."""
    return Check(lambda v: v >= minimum, f"an integer >= {minimum}", f"integers >= {minimum}")


NON_EMPTY = Check(lambda s: bool(s.strip()), "a non-empty string", "non-empty strings")


def key_path(path: str, key: str | int) -> str:
    """``key_path("datasets", 2) == "datasets[2]"``; ``key_path("train", "seed") == "train.seed"``."""
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else str(key)


def unknown_key(path: str, candidates: Iterable[str], here: Iterable[str]) -> SchemaError:
    """Error for an unknown key ``path``: close matches among ``candidates``, else the keys ``here``.

    Candidates are compared by their last key (difflib ratio >= 0.75), those under the same parent
    first, so ``train.max_stpes`` suggests ``train.max_steps`` and ``max_steps`` also finds it.
    """
    parent, _, leaf = path.rpartition(".")

    def rank(candidate: str) -> tuple[float, bool]:
        cand_parent, _, cand_leaf = candidate.rpartition(".")
        return -difflib.SequenceMatcher(None, leaf, cand_leaf).ratio(), cand_parent != parent

    ranked = sorted((rank(c), c) for c in candidates)
    close = [c for (neg_ratio, _), c in ranked if -neg_ratio >= 0.75][:3]
    if close:
        return SchemaError(path, f"unknown key (did you mean {' or '.join(repr(c) for c in close)}?)")
    return SchemaError(path, f"unknown key; valid keys: {', '.join(here)}")


def check_keys(data: Any, allowed: Iterable[str], path: str = "", candidates: Iterable[str] | None = None
               ) -> Mapping[str, Any]:
    """Return ``data`` if it is a mapping whose keys are all in ``allowed``.

    Args:
        data: The parsed YAML value.
        allowed: Valid keys at this level.
        path: Key path of ``data``.
        candidates: Full key paths to suggest from (default: ``allowed`` under ``path``).

    Raises:
        SchemaError: Not a mapping, or an unknown key (with a close-match suggestion).
    """
    if not isinstance(data, Mapping):
        raise SchemaError(path, f"expected a mapping, got {data!r}")
    allowed = list(allowed)
    for key in data:
        if key not in allowed:
            pool = list(candidates) if candidates is not None else [key_path(path, a) for a in allowed]
            raise unknown_key(key_path(path, str(key)), pool, allowed)
    return data


@functools.lru_cache(maxsize=None)
def fields_of(cls: type) -> dict[str, tuple[dataclasses.Field, Any]]:
    """``{name: (field, resolved type)}`` of a dataclass's init fields, ``Annotated`` kept."""
    hints = get_type_hints(cls, include_extras=True)
    return {f.name: (f, hints[f.name]) for f in dataclasses.fields(cls) if f.init}


def is_schema(tp: Any) -> bool:
    """Whether ``tp`` is a dataclass type (a nested section)."""
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def describe(tp: Any, plural: bool = False) -> str:
    """Human name of a field type: ``"an integer"``, ``"a list of strings"``, ``"one of png, jpeg"``."""
    origin = get_origin(tp)
    if origin is Annotated:
        checks = [m for m in get_args(tp)[1:] if isinstance(m, Check)]
        if not checks:
            return describe(get_args(tp)[0], plural)
        if plural:
            return checks[0].plural or f"values that are each {checks[0].expected}"
        return checks[0].expected
    if origin in (Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        parts = [describe(a, plural) for a in args] + (["null"] if len(args) < len(get_args(tp)) else [])
        return ", ".join(parts[:-1]) + " or " + parts[-1] if len(parts) > 1 else parts[0]
    if origin is Literal:
        names = [_yaml_name(c) for c in get_args(tp)]
        return names[0] if len(names) == 1 else "one of " + ", ".join(names)
    if origin in (list, tuple):
        item = (get_args(tp) or (Any,))[0]
        if plural:
            return "lists"
        return "a list" if item is Any else f"a list of {describe(item, plural=True)}"
    if tp is dict or origin is dict or is_schema(tp):
        return "mappings" if plural else "a mapping"
    names = {int: ("an integer", "integers"), float: ("a number", "numbers"), bool: ("true or false", "booleans"),
             str: ("a string", "strings"), Any: ("anything", "values")}
    singular, many = names.get(tp, (getattr(tp, "__name__", str(tp)),) * 2)
    return many if plural else singular


def _yaml_name(value: Any) -> str:
    if value is None:
        return "null"
    return str(value).lower() if isinstance(value, bool) else str(value)


def coerce(value: Any, tp: Any, path: str = "", text: bool = False, candidates: Iterable[str] | None = None) -> Any:
    """Convert a parsed YAML value to the type ``tp``.

    Numbers may come as strings ("1e-4", which YAML 1.1 reads as a string) and ``null``/``none``/``~``
    fill an ``Optional``. A string field takes only a YAML string (quote ``"2024"``; ``country: NO``
    is YAML's false and is refused). With ``text=True`` (a ``--set`` value) a number is also a string,
    a string becomes a list by splitting on commas and a scalar a one-element list.

    Args:
        value: The parsed value.
        tp: The resolved type annotation.
        path: Key path of the value, for errors.
        text: The value came from a command-line string.
        candidates: Full key paths to suggest from for unknown keys of nested dataclasses.

    Returns:
        The converted value (a dataclass instance for a dataclass type).

    Raises:
        SchemaError: The value does not fit; the message names ``path`` and the value.
    """
    origin = get_origin(tp)
    if origin is Annotated:
        base, *meta = get_args(tp)
        checks = [m for m in meta if isinstance(m, Check)]
        try:
            out = coerce(value, base, path, text, candidates)
        except SchemaError as err:
            if checks and err.path == path:
                raise SchemaError(path, f"expected {checks[0].expected}, got {value!r}") from None
            raise
        for check in checks:
            if not check.test(out):
                raise SchemaError(path, f"expected {check.expected}, got {value!r}")
        return out
    if origin in (Union, types.UnionType):
        return _coerce_union(value, tp, path, text, candidates)
    if origin is Literal:
        for choice in get_args(tp):
            if value == choice and type(value) is type(choice):
                return choice
            if text and isinstance(value, str) and value == _yaml_name(choice):
                return choice
        raise SchemaError(path, f"expected {describe(tp)}, got {value!r}")
    if origin in (list, tuple):
        item = (get_args(tp) or (Any,))[0]
        if text and isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        elif text and isinstance(value, (int, float, bool)):
            value = [value]  # "--set optim.betas=0.9" parses as a scalar
        if not isinstance(value, (list, tuple)):
            raise SchemaError(path, f"expected {describe(tp)}, got {value!r}")
        return [coerce(v, item, key_path(path, i), text, candidates) for i, v in enumerate(value)]
    if is_schema(tp):
        if isinstance(value, tp):
            return value
        return build(tp, value, path, text, candidates)
    if tp is Any:
        return value
    if tp is dict or origin is dict:
        if not isinstance(value, Mapping):
            raise SchemaError(path, f"expected a mapping, got {value!r}")
        return dict(value)
    scalar = _SCALARS.get(tp)
    if scalar is None:
        raise SchemaError(path, f"unsupported field type {tp!r}")
    if text and tp is str and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    out = scalar(value)
    if out is _INVALID:
        raise SchemaError(path, f"expected {describe(tp)}, got {value!r}")
    return out


def _coerce_union(value: Any, tp: Any, path: str, text: bool, candidates: Iterable[str] | None) -> Any:
    args = get_args(tp)
    if type(None) in args and (value is None or (isinstance(value, str) and value.lower() in NULL_STRINGS)):
        return None
    errors = []
    for arg in (a for a in args if a is not type(None)):
        try:
            return coerce(value, arg, path, text, candidates)
        except SchemaError as err:
            errors.append(err)
    deeper = [e for e in errors if e.path != path]  # e.g. an unknown key inside a nested mapping
    if deeper:
        raise deeper[0]
    raise SchemaError(path, f"expected {describe(tp)}, got {value!r}")


_INVALID = object()


def _to_int(value: Any) -> Any:
    if isinstance(value, bool):
        return _INVALID
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if value.is_integer() else _INVALID
    if isinstance(value, str):
        try:
            return int(value.replace("_", ""))
        except ValueError:
            number = _to_float(value)
            return _to_int(number) if isinstance(number, float) else _INVALID
    return _INVALID


def _to_float(value: Any) -> Any:
    if isinstance(value, bool):
        return _INVALID
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)  # YAML 1.1 reads "1e-4" as a string
        except ValueError:
            return _INVALID
    return _INVALID


def _to_bool(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in _TRUE + _FALSE:
        return value.lower() in _TRUE
    return _INVALID


def _to_str(value: Any) -> Any:
    return value if isinstance(value, str) else _INVALID


_SCALARS: dict[Any, Callable[[Any], Any]] = {int: _to_int, float: _to_float, bool: _to_bool, str: _to_str}


def build(cls: type[T], data: Any, path: str = "", text: bool = False,
          candidates: Iterable[str] | None = None) -> T:
    """Construct the dataclass ``cls`` from a mapping, typing every field.

    Fields without a default are required. Unknown keys fail with a close-match suggestion.

    Args:
        cls: The schema dataclass.
        data: The parsed mapping.
        path: Key path of ``data``.
        text: Values came from command-line strings (see :func:`coerce`).
        candidates: Full key paths to suggest from for unknown keys (default: this level's keys).

    Raises:
        SchemaError: Not a mapping, unknown key, missing required key, or a value of the wrong type.
    """
    fields = fields_of(cls)
    check_keys(data, fields, path, candidates)
    kwargs = {name: coerce(value, fields[name][1], key_path(path, name), text, candidates)
              for name, value in data.items()}
    for name, (f, _) in fields.items():
        if name not in kwargs and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise SchemaError(key_path(path, name), "missing required key")
    return cls(**kwargs)


def merge(obj: Any, data: Any, path: str = "", text: bool = False, candidates: Iterable[str] | None = None) -> None:
    """Override fields of the dataclass instance ``obj`` from a mapping (nested sections merge in place).

    A mapping given for a field that holds a dataclass merges into it; ``None`` for a required section
    means "no changes" (for an ``Optional`` one it sets ``None``). See :func:`build` for the arguments
    and errors.
    """
    fields = fields_of(type(obj))
    check_keys(data, fields, path, candidates)
    for name, value in data.items():
        tp, current = fields[name][1], getattr(obj, name)
        section = dataclasses.is_dataclass(current) and not isinstance(current, type)
        if section and (isinstance(value, Mapping) or (value is None and is_schema(tp))):
            merge(current, value or {}, key_path(path, name), text, candidates)
        else:
            setattr(obj, name, coerce(value, tp, key_path(path, name), text, candidates))


@contextmanager
def note(text: str) -> Iterator[None]:
    """Append ``(text)`` to any :class:`SchemaError` raised inside, e.g. ``note("dataset 'x'")``."""
    try:
        yield
    except SchemaError as err:
        raise err.with_note(text) from None


def read_yaml(path: str | Path) -> Any:
    """Parse a YAML file with ``yaml.safe_load`` (never constructs Python objects).

    Raises:
        FileNotFoundError: ``path`` is not a file.
        SchemaError: The text is not valid YAML (path ``""``).
    """
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"file not found: {file}")
    try:
        return yaml.safe_load(file.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise SchemaError("", f"invalid YAML: {err}") from None


__all__ = [
    "NON_EMPTY",
    "Check",
    "SchemaError",
    "at_least",
    "build",
    "check_keys",
    "coerce",
    "describe",
    "fields_of",
    "is_schema",
    "key_path",
    "merge",
    "note",
    "read_yaml",
    "unknown_key",
]
