"""Typed configuration: frozen dataclasses loaded from YAML, checked field by field.

Every mistake in a config file becomes a ConfigError naming the file and the dotted key,
with what was expected and what was found, e.g.
`presets/a.yaml: key 'codec.latent_dim': expected int, got str 'abc'`.
"""

import dataclasses
import difflib
import os
import re
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

import yaml

from engine.atomic import write_text_atomic

T = TypeVar("T")

# PyYAML follows YAML 1.1, which reads `3e-4` (no dot) as a string; float fields accept it.
_FLOAT_TEXT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


class ConfigError(ValueError):
    """A configuration value or file that does not fit its dataclass."""


def from_dict(cls: type[T], data: Mapping[str, Any], *, source: str = "<config>") -> T:
    """Build the dataclass `cls` from a plain mapping, checking every value against its type.

    Args:
        cls: a dataclass type; nested dataclass fields are built from nested mappings.
        data: keys are field names; missing keys take the field defaults.
        source: where `data` came from (a file path), quoted in error messages.

    Returns:
        An instance of `cls`.

    Raises:
        ConfigError: an unknown or missing key, or a value of the wrong type.
    """
    if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
        raise TypeError(f"from_dict needs a dataclass type, got {cls!r}")
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: expected a mapping of keys, got {_found(data)}")
    return _build(cls, data, source, prefix="")


def load_config(cls: type[T], path: str | os.PathLike[str]) -> T:
    """Load the dataclass `cls` from a YAML file; an empty file means all defaults."""
    path = Path(path)
    text = read_text_file(path)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise yaml_error(path, e) from None

    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path}: expected a mapping of keys at top level, got {_found(data)}")
    return from_dict(cls, data, source=str(path))


def read_text_file(path: Path, what: str = "config file", max_bytes: int | None = None) -> str:
    """A UTF-8 text file, or a ConfigError saying what is wrong with it.

    Args:
        what: how messages name the file ("config file", "preset file").
        max_bytes: refuse larger files, reading no more than this (whatever stat says).
    """
    try:
        with open(path, "rb") as file:
            data = file.read() if max_bytes is None else file.read(max_bytes + 1)
    except FileNotFoundError:
        raise ConfigError(f"no such {what}: {path}") from None
    except IsADirectoryError:
        raise ConfigError(f"expected a {what}, found a directory: {path}") from None
    except OSError as e:
        raise ConfigError(f"cannot read {what} {path}: {e.strerror or e}") from None
    if max_bytes is not None and len(data) > max_bytes:
        raise ConfigError(f"{path}: file too large (more than {max_bytes} bytes)")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not a UTF-8 text file (byte {e.start} is "
                          f"0x{data[e.start]:02x})") from None


def yaml_error(path: str | os.PathLike[str], error: yaml.YAMLError) -> ConfigError:
    """A YAML parse error as a ConfigError naming file, line and column where known."""
    mark = getattr(error, "problem_mark", None) or getattr(error, "context_mark", None)
    if mark is None:
        return ConfigError(f"{path}: invalid YAML: {error}")
    reason = getattr(error, "problem", None) or getattr(error, "context", None)
    return ConfigError(f"{path}:{mark.line + 1}:{mark.column + 1}: invalid YAML: {reason}")


def to_dict(obj: Any) -> dict[str, Any]:
    """Turn a dataclass into plain YAML/JSON types (tuples become lists, paths strings)."""
    if not (dataclasses.is_dataclass(obj) and not isinstance(obj, type)):
        raise TypeError(f"to_dict needs a dataclass instance, got {obj!r}")
    return _plain(obj)


def replace_config(obj: T, overrides: Mapping[str, Any], *, source: str = "overrides") -> T:
    """Return a copy of `obj` with dotted-key overrides applied and checked.

    Args:
        obj: a dataclass instance.
        overrides: e.g. {"codec.latent_dim": 64}; values must already be typed (a CLI can
            parse "64" with yaml.safe_load).
        source: quoted in error messages.
    """
    data = to_dict(obj)
    for dotted, value in overrides.items():
        section = data
        *parents, leaf = dotted.split(".")
        for depth, name in enumerate(parents):
            child = section.get(name)
            if child is None:  # an unset optional section, or a typo from_dict will name
                child = section[name] = {}
            elif not isinstance(child, dict):
                where = ".".join(parents[: depth + 1])
                raise ConfigError(
                    f"{source}: key {dotted!r}: {where!r} is not a section, it holds "
                    f"{_found(child)}"
                )
            section = child
        section[leaf] = _plain(value)  # a dataclass or tuple value, checked like YAML input
    return from_dict(type(obj), data, source=source)


def save_config(obj: Any, path: str | os.PathLike[str]) -> Path:
    """Write a dataclass as YAML, atomically, in field order; return the path."""
    text = yaml.safe_dump(to_dict(obj), sort_keys=False, allow_unicode=True)
    return write_text_atomic(path, text)


def _build(cls: type[T], data: Any, source: str, prefix: str) -> T:
    """Build dataclass `cls` from `data`, whose keys sit under the dotted `prefix`."""
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    for key in data:
        if key not in fields:
            allowed = ", ".join(fields)
            close = difflib.get_close_matches(str(key), fields, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ConfigError(f"{source}: unknown key '{prefix}{key}' ({hint}allowed: {allowed})")

    hints = get_type_hints(cls)
    values = {}
    for name, field in fields.items():
        if name in data:
            values[name] = _convert(data[name], hints[name], source, prefix + name)
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{source}: missing required key '{prefix}{name}'")
    try:
        return cls(**values)
    except ConfigError:
        raise
    except ValueError as e:  # a __post_init__ check, e.g. "must be positive"
        where = f"key {prefix[:-1]!r}" if prefix else cls.__name__
        raise ConfigError(f"{source}: {where}: {e}") from None


def _convert(value: Any, tp: Any, source: str, key: str) -> Any:
    """Check `value` against the type hint `tp` and return it in that type."""

    def fail(expected: str, hint: str = "", found: str | None = None) -> ConfigError:
        found = found or _found(value)
        return ConfigError(f"{source}: key {key!r}: expected {expected}, got {found}{hint}")

    origin, args = get_origin(tp), get_args(tp)

    if tp is Any:
        return value
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            raise fail(f"a mapping with keys {', '.join(f.name for f in dataclasses.fields(tp))}")
        return _build(tp, value, source, prefix=key + ".")
    if origin in (Union, types.UnionType):
        if value is None:
            if type(None) in args:
                return None
            raise fail(_name(tp))
        options = [a for a in args if a is not type(None)]
        if len(options) == 1:  # Optional[X]: X's own, more precise, message
            return _convert(value, options[0], source, key)
        for option in options:
            try:
                return _convert(value, option, source, key)
            except ConfigError:
                continue
        raise fail(_name(tp))
    if origin is Literal:
        # Compare types too: True == 1, but a YAML `true` is not the choice 1.
        if any(value == c and type(value) is type(c) for c in args):
            return value
        words = [c for c in args if isinstance(c, str)]
        close = difflib.get_close_matches(value, words, n=1) if isinstance(value, str) else []
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        # The value's type is only news when no choice has it: "got 'dlay'", "got bool True".
        found = repr(value) if any(type(value) is type(c) for c in args) else None
        raise fail("one of " + ", ".join(repr(c) for c in args), hint, found)
    if origin is tuple or tp is tuple:
        if not isinstance(value, (list, tuple)):
            raise fail(f"a list ({_name(tp)})")
        if not args:
            return tuple(value)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(v, args[0], source, f"{key}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise fail(f"a list of {len(args)} items ({_name(tp)})")
        return tuple(
            _convert(v, a, source, f"{key}[{i}]")
            for i, (v, a) in enumerate(zip(value, args, strict=True))
        )
    if origin is list or tp is list:
        if not isinstance(value, (list, tuple)):
            raise fail(f"a list ({_name(tp)})")
        item = args[0] if args else Any
        return [_convert(v, item, source, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict or tp is dict:
        if not isinstance(value, Mapping):
            raise fail(f"a mapping ({_name(tp)})")
        key_type, item = args if args else (Any, Any)
        converted = {}
        for k, v in value.items():
            name = _convert(k, key_type, source, f"{key}.{k}")
            converted[name] = _convert(v, item, source, f"{key}.{k}")
        return converted
    if tp is bool:
        if not isinstance(value, bool):
            raise fail("bool (true or false)")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise fail("int")
        return value
    if tp is float:
        if isinstance(value, str) and _FLOAT_TEXT.fullmatch(value.strip()):
            return float(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise fail("float")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise fail("str")
        return value
    if tp is Path:
        if not isinstance(value, (str, os.PathLike)):
            raise fail("a path (str)")
        return Path(value)
    if isinstance(tp, type):
        if not isinstance(value, tp):
            raise fail(tp.__name__)
        return value
    raise TypeError(f"{source}: key {key!r}: unsupported type annotation {tp!r}")


def _plain(value: Any) -> Any:
    """Recursively turn dataclasses, tuples and paths into plain YAML/JSON values."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value) if f.init}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, Path):
        return str(value)
    return value


def _name(tp: Any) -> str:
    """A readable name for a type hint: `int`, `list[int]`, `str | None`."""
    if isinstance(tp, type) and not get_args(tp):
        return tp.__name__
    return str(tp).replace("typing.", "").replace("NoneType", "None")


def _found(value: Any) -> str:
    """Describe a found value for an error message: `str 'abc'`, `null`, `list [1, 2]`."""
    if value is None:
        return "null"
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{type(value).__name__} {text}"
