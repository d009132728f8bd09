"""YAML from files the bridge did not write (presets): bounded before anything is built.

A file is refused unread above its size limit, refused when not UTF-8, and its YAML events are
checked before any object is made: no anchors or aliases (a "billion laughs" bomb is refused
at its first anchor instead of being expanded), nesting at most `max_depth` deep (deep
nesting would exhaust Python's recursion), at most `max_nodes` scalars and collections, and no
key twice in one mapping. Every refusal is a ConfigError naming the file (and line and column
where there is one).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from engine.config import ConfigError, read_text_file, yaml_error

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass(frozen=True)
class YamlLimits:
    """What an untrusted YAML file may hold."""

    max_bytes: int = 64 * 1024
    max_depth: int = 8
    max_nodes: int = 4096


DEFAULT_LIMITS = YamlLimits()


@dataclass
class _OpenMapping:
    """A mapping being parsed: the keys seen so far, and whether a key comes next."""

    keys: set[str] = field(default_factory=set)
    expecting_key: bool = True


def load_untrusted_yaml(path: str | Path, limits: YamlLimits = DEFAULT_LIMITS) -> Any:
    """The plain data (dicts, lists, scalars) of a YAML file, within `limits`.

    Raises:
        ConfigError: a missing, too large, non-UTF-8, malformed or over-limit file.
    """
    path = Path(path)
    text = read_text_file(path, "preset file", limits.max_bytes)
    try:
        _check_events(text, path, limits)
        return yaml.load(text, Loader=_Loader)  # the safe loader: plain data only
    except yaml.YAMLError as e:
        raise yaml_error(path, e) from None


def _check_events(text: str, path: Path, limits: YamlLimits) -> None:
    """Walk the parser's events (no objects built) and refuse what the limits forbid, and a
    key given twice in one mapping (YAML would silently keep the last)."""
    open_collections: list[_OpenMapping | None] = []  # None for a sequence
    nodes = 0
    for event in yaml.parse(text, Loader=_Loader):
        where = _where(path, event)
        if isinstance(event, yaml.AliasEvent):
            raise ConfigError(f"{where}: YAML aliases (*{event.anchor}) are not allowed")
        if isinstance(event, yaml.CollectionEndEvent):
            open_collections.pop()
        if not isinstance(event, yaml.NodeEvent):
            continue
        if event.anchor is not None:
            raise ConfigError(f"{where}: YAML anchors (&{event.anchor}) are not allowed")
        nodes += 1
        if nodes > limits.max_nodes:
            raise ConfigError(f"{where}: more than {limits.max_nodes} YAML values")
        mapping = open_collections[-1] if open_collections else None
        if mapping is not None:  # inside a mapping: keys and values alternate
            if mapping.expecting_key and isinstance(event, yaml.ScalarEvent):
                if event.value in mapping.keys:
                    raise ConfigError(f"{where}: key {event.value!r} is given twice")
                mapping.keys.add(event.value)
            mapping.expecting_key = not mapping.expecting_key
        if isinstance(event, yaml.CollectionStartEvent):
            if len(open_collections) == limits.max_depth:
                raise ConfigError(f"{where}: nested more than {limits.max_depth} levels deep")
            is_mapping = isinstance(event, yaml.MappingStartEvent)
            open_collections.append(_OpenMapping() if is_mapping else None)


def _where(path: Path, event: yaml.Event) -> str:
    mark = event.start_mark
    return f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
