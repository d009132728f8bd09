"""The OSC address space as data: address → argument specs → command.

`parse_message(address, args)` is pure (no sockets), so every address is tested without a
network. Numbers may arrive as int or float (Pure Data sends every number as a float), and a
prompt may arrive as several strings (a Pd or Max list of words), which are joined by spaces.
A job id, when given, is the last argument and must come after the numbers before it:
`/indie/generate "warm strings" 0 -1 take7` (0 seconds = the session's length, -1 = random seed).
"""

from __future__ import annotations

import math
import re
import reprlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from bridge.osc import commands as c
from bridge.settings import MAX_PROMPT

MAX_STRING = 1024
JOB_ID = re.compile(r"[A-Za-z0-9_.-]{1,64}")
NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
PREFIX = "/indie/"


class _Mismatch(Exception):
    """A value that does not fit an argument kind (an optional argument may then be skipped)."""


@dataclass(frozen=True)
class Kind:
    """How one argument is read: a name for messages and a converter that raises _Mismatch."""

    name: str
    convert: Callable[[Any], Any]
    greedy: bool = False  # consumes every following string (a prompt of several words)


@dataclass(frozen=True)
class Arg:
    name: str
    kind: Kind
    optional: bool = False
    low: float | None = None
    high: float | None = None


@dataclass(frozen=True)
class Route:
    """One address: its arguments in order and the command they build (keyword = Arg.name)."""

    address: str
    args: tuple[Arg, ...]
    command: Callable[..., c.Command]
    help: str


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _Mismatch("a number")
    return float(value)


def _integer(value: Any) -> int:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Mismatch("an integer")
    return value


def _flag(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    raise _Mismatch("0 or 1")


def _string(value: Any) -> str:
    if not isinstance(value, str):
        raise _Mismatch("a string")
    if len(value) > MAX_STRING or "\x00" in value:
        raise _Mismatch(f"a string of at most {MAX_STRING} characters")
    return value


def _text(value: Any) -> str:
    text = _string(value)
    if len(text) > MAX_PROMPT:
        raise _Mismatch(f"text of at most {MAX_PROMPT} characters")
    return text


def _name(value: Any) -> str:
    if not isinstance(value, str) or not NAME.fullmatch(value):
        raise _Mismatch("a name of letters, digits, '-' or '_'")
    return value


def _job_id(value: Any) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(_integer(value))
    if not isinstance(value, str) or not JOB_ID.fullmatch(value):
        raise _Mismatch("a job id of letters, digits, '.', '-' or '_'")
    return value


def _value(value: Any) -> str | float | int:
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return _number(value)


NUMBER = Kind("number", _number)
INTEGER = Kind("integer", _integer)
FLAG = Kind("0 or 1", _flag)
STRING = Kind("string", _string)
TEXT = Kind("text", _text, greedy=True)
NAME_KIND = Kind("name", _name)
JOB = Kind("job id", _job_id)
VALUE = Kind("number or string", _value)

_ID = Arg("job_id", JOB, optional=True)

ROUTES = (
    Route("/indie/ping", (), lambda: c.Ping(), "answer /indie/pong <version> <busy>"),
    Route("/indie/generate",
          (Arg("prompt", TEXT), Arg("seconds", NUMBER, True, 0, 600),
           Arg("seed", INTEGER, True, -1, 2**31 - 1), _ID),
          c.Generate, "generate a clip: prompt [seconds] [seed] [id]"),
    Route("/indie/continue",
          (Arg("file", STRING), Arg("seconds", NUMBER, True, 0, 600),
           Arg("seed", INTEGER, True, -1, 2**31 - 1), _ID),
          c.Continue, "continue a clip from the input folder: file [seconds] [seed] [id]"),
    Route("/indie/set", (Arg("name", NAME_KIND), Arg("value", VALUE)), c.Set,
          "set a generation parameter: name value"),
    Route("/indie/tempo", (Arg("bpm", NUMBER, low=20, high=400),), c.Tempo,
          "host tempo in beats per minute"),
    Route("/indie/melody/note",
          (Arg("pitch", INTEGER, low=0, high=127), Arg("velocity", INTEGER, low=0, high=127)),
          c.MelodyNote, "note on (velocity 0 = off)"),
    Route("/indie/melody/clear", (), lambda: c.MelodyClear(), "forget the recorded melody"),
    Route("/indie/preset", (Arg("name", NAME_KIND),), c.LoadPreset,
          "load presets/<name>.yaml"),
    Route("/indie/render", (Arg("preset", NAME_KIND), _ID), c.Render,
          "render a preset to a file: preset [id]"),
    Route("/indie/live", (Arg("on", FLAG),), c.Live, "1 starts, 0 stops continuous generation"),
    Route("/indie/cancel", (_ID,), c.Cancel, "cancel a job (no id: everything)"),
    Route("/indie/status", (), lambda: c.Status(), "answer /indie/state key value ..."),
    Route("/indie/reply", (Arg("host", STRING), Arg("port", INTEGER, low=1, high=65535)),
          c.ReplyTo, "send replies to host:port"),
)
ADDRESSES: dict[str, Route] = {route.address: route for route in ROUTES}

# What the bridge sends back (to the sender's host at the reply port, or to /indie/reply's).
REPLIES = {
    "/indie/pong": "version busy",
    "/indie/queued": "id waiting",
    "/indie/started": "id",
    "/indie/progress": "id fraction (0..1, at most every 0.1 s)",
    "/indie/done": "id path seconds (path is empty for output=stream)",
    "/indie/cancelled": "id seconds_made",
    "/indie/error": "id code message (id is empty when no job is named)",
    "/indie/ack": "address [values...] (set, tempo, preset, live, cancel, reply, melody/clear)",
    "/indie/state": "key value key value ... (status)",
}


def parse_message(address: str, args: Sequence[Any]) -> c.Command:
    """Turn one OSC message into a command.

    Args:
        address: the OSC address, e.g. "/indie/generate".
        args: the decoded arguments (str, int, float, bool, ...).

    Returns:
        The command dataclass of the address.

    Raises:
        CommandError: unknown address (code unknown_address), wrong count or type
            (bad_arguments) or a number out of range (out_of_range).
    """
    route = ADDRESSES.get(address)
    if route is None:
        shown = address if len(address) <= 80 else address[:80] + "..."
        raise c.CommandError("unknown_address", f"unknown address {shown!r}")
    job_id = _find_job_id(route, args)
    values: dict[str, Any] = {}
    position = 0
    for index, arg in enumerate(route.args):
        if position >= len(args):
            if not arg.optional:
                raise c.CommandError("bad_arguments",
                                     f"{address}: missing {arg.name} ({arg.kind.name})", job_id)
            continue
        if arg.kind.greedy:
            words = []
            while position < len(args) and isinstance(args[position], str):
                words.append(args[position])
                position += 1
            raw: Any = " ".join(words) if words else args[position]
        else:
            raw = args[position]
            position += 1
        try:
            value = arg.kind.convert(raw)
        except _Mismatch as expected:
            later_fits = arg.optional and any(_fits(later, raw) for later in route.args[index + 1:])
            if later_fits:
                position -= 1  # leave the value to a later argument
                continue
            raise c.CommandError("bad_arguments",
                                 f"{address}: {arg.name} expects {expected}, got {_show(raw)}",
                                 job_id) from None
        if arg.low is not None and not arg.low <= value <= arg.high:
            raise c.CommandError("out_of_range",
                                 f"{address}: {arg.name} must be in [{arg.low:g}, {arg.high:g}], "
                                 f"got {value:g}", job_id)
        values[arg.name] = value
    if position < len(args):
        raise c.CommandError("bad_arguments",
                             f"{address}: {len(args) - position} unexpected argument(s) "
                             f"({', '.join(_show(a) for a in args[position:position + 3])})",
                             job_id)
    return route.command(**values)


def _fits(arg: Arg, raw: Any) -> bool:
    try:
        arg.kind.convert(raw)
    except _Mismatch:
        return False
    return True


def _find_job_id(route: Route, args: Sequence[Any]) -> str:
    """The job id a bad message named (last argument), so its error can name the job too."""
    if route.args and route.args[-1].kind is JOB and len(args) > 1 and isinstance(args[-1], str):
        return args[-1] if JOB_ID.fullmatch(args[-1]) else ""
    return ""


_SHOW = reprlib.Repr()
_SHOW.maxlevel, _SHOW.maxstring, _SHOW.maxother = 3, 40, 40


def _show(value: Any) -> str:
    """A short repr of a bad value; reprlib, so a huge blob or deeply nested array costs little."""
    return _SHOW.repr(value)
