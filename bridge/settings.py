"""The session's generation settings: what `/indie/set`, presets and MIDI CCs change.

One frozen dataclass, replaced whole on every change, so a job snapshots the settings it was
queued with. `with_value(name, value)` is the single place where a named value is checked.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass
from typing import Any, Literal

OUTPUTS = ("stream", "file", "both")
FORMATS = ("wav", "flac")
PATTERN_NAME = re.compile(r"[a-z_]{1,32}")


class SettingError(ValueError):
    """A setting name or value that is not accepted; the message says what was expected."""


@dataclass(frozen=True)
class Settings:
    """Generation parameters; `seed` -1 means a fresh random seed per job.

    `bars` (with a tempo from `bpm` or the host) wins over `seconds`. `bpm` 0 means "use the
    host tempo" (OSC /indie/tempo or MIDI clock), and no tempo condition when there is none.
    """

    prompt: str = ""
    seconds: float = 8.0
    bars: float = 0.0
    bpm: float = 0.0
    beats_per_bar: int = 4
    pattern: str = ""
    temperature: float = 1.0
    top_k: int = 250
    top_p: float = 0.0
    cfg: float = 3.0
    seed: int = -1
    output: Literal["stream", "file", "both"] = "both"
    format: Literal["wav", "flac"] = "wav"
    live_chunk_seconds: float = 2.0

    def with_value(self, name: str, value: Any) -> Settings:
        """A copy with `name` set to `value`, checked; raises SettingError."""
        check = _CHECKS.get(name)
        if check is None:
            raise SettingError(f"unknown setting {name!r} (known: {', '.join(_CHECKS)})")
        return dataclasses.replace(self, **{name: check(name, value)})

    def with_values(self, values: dict[str, Any]) -> Settings:
        settings = self
        for name, value in values.items():
            settings = settings.with_value(name, value)
        return settings


def _number(low: float, high: float, *, low_open: bool = False):
    def check(name: str, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SettingError(f"{name} expects a number, got {value!r}")
        value = float(value)
        if not math.isfinite(value) or value < low or value > high or (low_open and value == low):
            bracket = "(" if low_open else "["
            raise SettingError(f"{name} must be in {bracket}{low:g}, {high:g}], got {value:g}")
        return value
    return check


def _integer(low: int, high: int):
    def check(name: str, value: Any) -> int:
        if isinstance(value, float) and value.is_integer():
            value = int(value)  # Pure Data sends every number as a float
        if isinstance(value, bool) or not isinstance(value, int):
            raise SettingError(f"{name} expects an integer, got {value!r}")
        if not low <= value <= high:
            raise SettingError(f"{name} must be in [{low}, {high}], got {value}")
        return value
    return check


def _choice(choices: tuple[str, ...]):
    def check(name: str, value: Any) -> str:
        if value not in choices:
            raise SettingError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
        return value
    return check


def _pattern(name: str, value: Any) -> str:
    # The engine names the known patterns when one is unknown; here only the shape is checked.
    if not isinstance(value, str) or not (value == "" or PATTERN_NAME.fullmatch(value)):
        raise SettingError(f"{name} expects a pattern name such as 'delay', got {value!r}")
    return value


def _prompt(name: str, value: Any) -> str:
    if not isinstance(value, str) or len(value) > MAX_PROMPT:
        raise SettingError(f"{name} expects text of at most {MAX_PROMPT} characters")
    return value


MAX_PROMPT = 500

_CHECKS = {
    "prompt": _prompt,
    "seconds": _number(0.0, 600.0, low_open=True),
    "bars": _number(0.0, 256.0),
    "bpm": _number(0.0, 400.0),
    "beats_per_bar": _integer(1, 16),
    "pattern": _pattern,
    "temperature": _number(0.0, 5.0, low_open=True),
    "top_k": _integer(0, 100_000),
    "top_p": _number(0.0, 1.0),
    "cfg": _number(0.0, 30.0),
    "seed": _integer(-1, 2**31 - 1),
    "output": _choice(OUTPUTS),
    "format": _choice(FORMATS),
    "live_chunk_seconds": _number(0.25, 30.0),
}
SETTING_NAMES = tuple(_CHECKS)
