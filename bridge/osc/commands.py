"""Commands: what an OSC (or MIDI) message asks the session to do, as typed values.

Transport parses bytes into messages, the address table turns a message into one of these,
and the session acts on it; none of these know about sockets.
"""

from __future__ import annotations

from dataclasses import dataclass


class CommandError(ValueError):
    """A message that cannot become a command; answered with `/indie/error <id> <code> <text>`.

    Args:
        code: a short machine-readable word (unknown_address, bad_arguments, ...).
        message: what was wrong, for a person.
        job_id: the job the message named, if any.
    """

    def __init__(self, code: str, message: str, job_id: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.job_id = job_id


@dataclass(frozen=True)
class Ping:
    pass


@dataclass(frozen=True)
class Generate:
    """Generate a clip; seconds 0 means the session's seconds/bars, seed -1 a random one."""

    prompt: str
    seconds: float = 0.0
    seed: int = -1
    job_id: str = ""


@dataclass(frozen=True)
class Continue:
    """Continue an audio clip from the input folder (`file` is relative to it)."""

    file: str
    seconds: float = 0.0
    seed: int = -1
    job_id: str = ""


@dataclass(frozen=True)
class Set:
    name: str
    value: str | float | int


@dataclass(frozen=True)
class Tempo:
    bpm: float


@dataclass(frozen=True)
class MelodyNote:
    """Note on (velocity > 0) or off (velocity 0)."""

    pitch: int
    velocity: int


@dataclass(frozen=True)
class MelodyClear:
    pass


@dataclass(frozen=True)
class LoadPreset:
    name: str


@dataclass(frozen=True)
class Render:
    preset: str
    job_id: str = ""


@dataclass(frozen=True)
class Live:
    on: bool


@dataclass(frozen=True)
class Cancel:
    """Cancel one job, or (empty id) the running job, the queue and live mode."""

    job_id: str = ""


@dataclass(frozen=True)
class Status:
    pass


@dataclass(frozen=True)
class ReplyTo:
    host: str
    port: int


@dataclass(frozen=True)
class Transport:
    """MIDI start/stop: start or stop live mode (or the current job)."""

    start: bool


Command = (Ping | Generate | Continue | Set | Tempo | MelodyNote | MelodyClear | LoadPreset
           | Render | Live | Cancel | Status | ReplyTo | Transport)
