"""Load typed dataclass configs from YAML plus ``--set a.b=c`` overrides.

Usage::

    cfg = load_config(PretrainConfig, "recipes/pretrain/debug.yaml", ["train.max_steps=50"])
    save_config(cfg, run_dir / "config.yaml")

Works for any (nested) dataclass whose fields are typed with ``int``, ``float``,
``bool``, ``str``, ``list[T]``, ``Optional[T]``, ``Literal[...]`` or another
dataclass, so fine-tuning configs reuse it unchanged. A YAML file holds only
the differences from the defaults. Errors are :class:`ConfigError` naming the
offending key, with close matches for unknown keys and the valid choices for
``Literal`` fields. After loading, every dataclass's optional ``validate()``
runs, innermost sections first.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import types
from pathlib import Path
from typing import Any, Iterable, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

import yaml

from echocare.config.errors import ConfigError

T = TypeVar("T")


def _fields(cls: type) -> dict[str, tuple[dataclasses.Field, Any]]:
    hints = get_type_hints(cls)
    return {f.name: (f, hints[f.name]) for f in dataclasses.fields(cls) if f.init}


def all_keys(cls: type, prefix: str = "") -> list[str]:
    """Every dotted leaf key of a config dataclass, e.g. ``["model.name", ...]``."""
    keys: list[str] = []
    for name, (_, tp) in _fields(cls).items():
        if dataclasses.is_dataclass(tp):
            keys.extend(all_keys(tp, f"{prefix}{name}."))
        else:
            keys.append(f"{prefix}{name}")
    return keys


def _unknown_key(key: str, root: type) -> ConfigError:
    valid = all_keys(root)
    close = difflib.get_close_matches(key, valid, n=3, cutoff=0.6)
    hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    return ConfigError(f"unknown key '{key}'{hint} valid: {', '.join(valid)}")


def _type_name(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is Literal:
        return "{" + ",".join(str(a) for a in get_args(tp)) + "}"
    if origin in (Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        return f"Optional[{_type_name(args[0])}]" if len(args) == 1 else str(tp)
    if origin in (list, tuple):
        return f"list[{_type_name(get_args(tp)[0])}]"
    return getattr(tp, "__name__", str(tp))


def coerce(value: Any, tp: Any, key: str) -> Any:
    """Convert ``value`` (from YAML or a ``--set`` string) to the field type ``tp``.

    Args:
        value: Parsed YAML value.
        tp: The resolved type annotation of the field.
        key: Dotted key, used in error messages.

    Returns:
        The converted value.

    Raises:
        ConfigError: The value does not fit the type; the message names ``key``.
    """
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if value is None or (isinstance(value, str) and value.lower() in ("null", "none", "~")):
            if type(None) in get_args(tp):
                return None
        errors = []
        for arg in args:
            try:
                return coerce(value, arg, key)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{key}: {value!r} is not a {_type_name(tp)}")
    if origin is Literal:
        choices = get_args(tp)
        if value in choices:
            return value
        raise ConfigError(f"{key}: invalid choice {value!r}; valid choices: {', '.join(map(str, choices))}")
    if origin in (list, tuple):
        (item_tp, *_) = get_args(tp) or (Any,)
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()] if value.strip() else []
        if isinstance(value, (int, float, bool)):
            value = [value]  # "--set optim.betas=0.9" parses as a scalar: a one-element list
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        return [coerce(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value)]
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "yes", "on", "1", "false", "no", "off", "0"):
            return value.lower() in ("true", "yes", "on", "1")
        raise ConfigError(f"{key}: expected a bool (true/false), got {value!r}")
    if tp is int:
        if isinstance(value, bool):
            raise ConfigError(f"{key}: expected an int, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value.replace("_", ""))
            except ValueError:
                try:
                    as_float = float(value)
                except ValueError:
                    as_float = float("nan")
                if as_float.is_integer():
                    return int(as_float)
        raise ConfigError(f"{key}: expected an int, got {value!r}")
    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(f"{key}: expected a float, got {value!r}")
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)  # YAML 1.1 reads "1e-4" as a string
            except ValueError:
                pass
        raise ConfigError(f"{key}: expected a float, got {value!r}")
    if tp is str:
        if isinstance(value, (dict, list)) or value is None:
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return str(value)
    if tp is dict or origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is Any:
        return value
    raise ConfigError(f"{key}: unsupported field type {tp!r}")


def _merge(obj: Any, data: dict, prefix: str, root: type) -> None:
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'}: expected a mapping, got {data!r}")
    fields = _fields(type(obj))
    for name, value in data.items():
        key = f"{prefix}{name}"
        if name not in fields:
            raise _unknown_key(key, root)
        _, tp = fields[name]
        if dataclasses.is_dataclass(tp):
            _merge(getattr(obj, name), value or {}, f"{key}.", root)
        else:
            setattr(obj, name, coerce(value, tp, key))


def _set(obj: Any, dotted: str, raw: str, root: type) -> None:
    parts = dotted.split(".")
    target = obj
    for i, part in enumerate(parts):
        fields = _fields(type(target))
        if part not in fields:
            raise _unknown_key(dotted, root)
        _, tp = fields[part]
        if i == len(parts) - 1:
            if dataclasses.is_dataclass(tp):
                first = next(iter(_fields(tp)))
                raise ConfigError(f"'{dotted}' is a section; set one of its keys, e.g. '{dotted}.{first}'")
            value = raw
            if get_origin(tp) is not Literal and tp is not str:
                try:
                    value = yaml.safe_load(raw) if raw.strip() else raw
                except yaml.YAMLError:
                    value = raw
            setattr(target, part, coerce(value, tp, dotted))
        else:
            if not dataclasses.is_dataclass(tp):
                raise _unknown_key(dotted, root)
            target = getattr(target, part)


def _validate(obj: Any) -> None:
    for name in _fields(type(obj)):
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
        with path.open() as fh:
            try:
                data = yaml.safe_load(fh) or {}
            except yaml.YAMLError as err:
                raise ConfigError(f"{path}: invalid YAML: {err}") from err
        try:
            _merge(cfg, data, "", cls)
        except ConfigError as err:
            raise ConfigError(f"{path}: {err}") from None
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key=value (e.g. train.max_steps=100)")
        key, raw = item.split("=", 1)
        _set(cfg, key.strip(), raw, cls)
    if validate:
        _validate(cfg)
    return cfg


def config_to_dict(cfg: Any) -> dict:
    """A plain (JSON/YAML-able) nested dict of a config dataclass."""
    return json.loads(json.dumps(dataclasses.asdict(cfg)))


def config_from_dict(cls: type[T], data: dict, validate: bool = True) -> T:
    """Rebuild a config from :func:`config_to_dict` output (e.g. a run's config.yaml)."""
    cfg = cls()
    _merge(cfg, data, "", cls)
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
    for name, (f, tp) in _fields(cls).items():
        key = f"{prefix}{name}"
        if dataclasses.is_dataclass(tp):
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
