"""Load typed dataclass configs from YAML plus ``--set a.b=c`` overrides.

Usage::

    cfg = load_config(PretrainConfig, "recipes/pretrain/debug.yaml", ["train.max_steps=50"])
    save_config(cfg, run_dir / "config.yaml")

Works for any (nested) dataclass whose fields are typed with ``int``, ``float``,
``bool``, ``str``, ``list[T]``, ``Optional[T]``, ``Literal[...]`` or another
dataclass, so fine-tuning configs reuse it unchanged. A YAML file holds only
the differences from the defaults. Reading and typing go through
:mod:`echocare.typed`, the one YAML mechanism shared with manifests and
ontologies; errors are :class:`ConfigError` in its style, e.g.
``config r.yaml: train.max_stpes: unknown key (did you mean 'train.max_steps'?)``
or ``--set train.precision: expected one of auto, bf16, fp16, fp32, got 'bf32'``.
After loading, every dataclass's optional ``validate()`` runs, innermost
sections first.
"""

from __future__ import annotations

import dataclasses
import json
import types
from pathlib import Path
from typing import Annotated, Any, Iterable, Literal, TypeVar, Union, get_args, get_origin

import yaml

from echocare.config.errors import ConfigError
from echocare.typed import SchemaError, fields_of, is_schema, key_path, merge, read_yaml, unknown_key
from echocare.typed import coerce as _coerce

T = TypeVar("T")


def all_keys(cls: type, prefix: str = "") -> list[str]:
    """Every dotted leaf key of a config dataclass, e.g. ``["model.name", ...]``."""
    keys: list[str] = []
    for name, (_, tp) in fields_of(cls).items():
        if is_schema(tp):
            keys.extend(all_keys(tp, f"{prefix}{name}."))
        else:
            keys.append(f"{prefix}{name}")
    return keys


def _type_name(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is Annotated:
        return _type_name(get_args(tp)[0])
    if origin is Literal:
        return "{" + ",".join(str(a) for a in get_args(tp)) + "}"
    if origin in (Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        return f"Optional[{_type_name(args[0])}]" if len(args) == 1 else str(tp)
    if origin in (list, tuple):
        return f"list[{_type_name(get_args(tp)[0])}]"
    return getattr(tp, "__name__", str(tp))


def coerce(value: Any, tp: Any, key: str) -> Any:
    """Convert ``value`` (a ``--set`` string or parsed YAML) to the field type ``tp``.

    The command-line flavour of :func:`echocare.typed.coerce`: strings also become lists by
    splitting on commas.

    Args:
        value: Parsed YAML value or override string.
        tp: The resolved type annotation of the field.
        key: Dotted key, used in error messages.

    Returns:
        The converted value.

    Raises:
        ConfigError: The value does not fit the type; the message names ``key`` and the value.
    """
    try:
        return _coerce(value, tp, key, text=True)
    except SchemaError as err:
        raise ConfigError(str(err)) from None


def _set(obj: Any, dotted: str, raw: str, root: type) -> None:
    """Apply one ``--set dotted=raw`` override (raises :class:`SchemaError`)."""
    parts = dotted.split(".")
    target = obj
    for i, part in enumerate(parts):
        fields = fields_of(type(target))
        if part not in fields:
            here = [key_path(".".join(parts[:i]), name) for name in fields]
            raise unknown_key(dotted, all_keys(root), here)
        tp = fields[part][1]
        if i == len(parts) - 1:
            if is_schema(tp):
                first = next(iter(fields_of(tp)))
                raise SchemaError(dotted, f"is a section; set one of its keys, e.g. {dotted}.{first}")
            value: Any = raw
            if get_origin(tp) is not Literal and tp is not str:
                try:
                    value = yaml.safe_load(raw) if raw.strip() else raw
                except yaml.YAMLError:
                    value = raw
            setattr(target, part, _coerce(value, tp, dotted, text=True))
        else:
            if not is_schema(tp):
                raise unknown_key(dotted, all_keys(root), [".".join(parts[: i + 1])])
            target = getattr(target, part)


def _validate(obj: Any) -> None:
    for name in fields_of(type(obj)):
        value = getattr(obj, name)
        if dataclasses.is_dataclass(value):
            _validate(value)
    check = getattr(obj, "validate", None)
    if callable(check):
        check()


def load_config(cls: type[T], path: str | Path | None = None, overrides: Iterable[str] = (),
                validate: bool = True) -> T:
    """Build a config: defaults, then the YAML file, then ``key=value`` overrides.

    Args:
        cls: The config dataclass (e.g. ``PretrainConfig``).
        path: Optional YAML file holding differences from the defaults.
        overrides: ``"a.b=c"`` strings; values are parsed as YAML then typed by the field.
        validate: Run every section's ``validate()`` (disable to inspect partial configs).

    Returns:
        An instance of ``cls``.

    Raises:
        ConfigError: Unknown key, bad type/choice, or failed validation.
        FileNotFoundError: ``path`` does not exist.
    """
    cfg = cls()
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"config file not found: {path}")
        try:
            merge(cfg, read_yaml(path) or {}, "", candidates=all_keys(cls))
        except SchemaError as err:
            raise ConfigError(f"config {path}: {err}") from None
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set {item!r} must look like key=value (e.g. train.max_steps=100)")
        key, raw = item.split("=", 1)
        try:
            _set(cfg, key.strip(), raw, cls)
        except SchemaError as err:
            raise ConfigError(f"--set {err}") from None
    if validate:
        _validate(cfg)
    return cfg


def config_to_dict(cfg: Any) -> dict:
    """A plain (JSON/YAML-able) nested dict of a config dataclass."""
    return json.loads(json.dumps(dataclasses.asdict(cfg)))


def config_from_dict(cls: type[T], data: dict, validate: bool = True) -> T:
    """Rebuild a config from :func:`config_to_dict` output (e.g. a run's config.yaml)."""
    cfg = cls()
    try:
        merge(cfg, data, "", candidates=all_keys(cls))
    except SchemaError as err:
        raise ConfigError(f"config: {err}") from None
    if validate:
        _validate(cfg)
    return cfg


def config_to_yaml(cfg: Any) -> str:
    """The resolved config as YAML text (sections in declaration order)."""
    return yaml.safe_dump(config_to_dict(cfg), sort_keys=False)


def save_config(cfg: Any, path: str | Path, extra: dict | None = None) -> Path:
    """Write the resolved config (plus an optional ``derived`` mapping) as YAML."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = config_to_yaml(cfg)
    if extra:
        text += "# derived values (informational, not read back)\n"
        text += "\n".join(f"# {k}: {v}" for k, v in extra.items()) + "\n"
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)
    return path


def describe_config(cls: type, prefix: str = "") -> list[tuple[str, str, str, str]]:
    """``(key, type, default, help)`` rows for every leaf key, for --help and docs."""
    rows: list[tuple[str, str, str, str]] = []
    defaults = cls()
    for name, (f, tp) in fields_of(cls).items():
        key = f"{prefix}{name}"
        if is_schema(tp):
            rows.extend(describe_config(tp, f"{key}."))
            continue
        default = json.dumps(getattr(defaults, name))
        rows.append((key, _type_name(tp), default, f.metadata.get("help", "")))
    return rows


def format_config_help(cls: type) -> str:
    """A plain-text table of every config key with its type, default and help."""
    rows = describe_config(cls)
    width = max(len(r[0]) for r in rows)
    lines = []
    for key, tp, default, help_text in rows:
        lines.append(f"  {key:<{width}}  {help_text}")
        lines.append(f"  {'':<{width}}  type {tp}, default {default}")
    return "\n".join(lines)


__all__ = [
    "all_keys",
    "coerce",
    "config_from_dict",
    "config_to_dict",
    "config_to_yaml",
    "describe_config",
    "format_config_help",
    "load_config",
    "save_config",
]
