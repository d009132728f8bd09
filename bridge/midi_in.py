"""MIDI in: a port by name (mido + python-rtmidi) or a MIDI file, turned into session commands.

Note on/off → /indie/melody/note; MIDI clock (24 per quarter note) → /indie/tempo; start/stop →
live mode on/off; a CC in the preset's CC map → /indie/set; program change N → the N-th preset
(alphabetical). Where the machine has no MIDI system (no ALSA sequencer), opening a port fails,
the bridge logs it once and runs on without MIDI.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

from bridge.osc import commands as c
from engine.melody import Note

logger = logging.getLogger(__name__)

CLOCKS_PER_BEAT = 24


class ClockTempo:
    """Tempo from MIDI clock ticks: the mean tick interval over the last beat."""

    def __init__(self) -> None:
        self._ticks: deque[float] = deque(maxlen=CLOCKS_PER_BEAT + 1)

    def tick(self, when: float) -> float | None:
        """Record a tick; returns the tempo once a full beat of ticks is known."""
        self._ticks.append(when)
        if len(self._ticks) <= CLOCKS_PER_BEAT:
            return None
        beat = self._ticks[-1] - self._ticks[0]
        return 60.0 / beat if beat > 0 else None

    def reset(self) -> None:
        self._ticks.clear()


class MidiRouter:
    """Turns mido messages into commands (pure but for the clock's tempo estimate).

    Args:
        cc_map: CC number → setting name (from the preset).
        preset_names: names indexed by program change number.
        cc_value: maps (setting, 0..127) to the setting's value.
    """

    def __init__(self, cc_map: dict[int, str] | None = None,
                 preset_names: list[str] | None = None,
                 cc_value: Callable[[str, int], float | int] | None = None) -> None:
        self.cc_map = dict(cc_map or {})
        self.preset_names = list(preset_names or [])
        self.cc_value = cc_value
        self.clock = ClockTempo()
        self._last_bpm: float | None = None

    def route(self, message, when: float | None = None) -> list[c.Command]:
        when = time.monotonic() if when is None else when
        kind = message.type
        if kind == "note_on":
            return [c.MelodyNote(message.note, message.velocity)]
        if kind == "note_off":
            return [c.MelodyNote(message.note, 0)]
        if kind == "clock":
            bpm = self.clock.tick(when)
            # Announce a tempo once per beat, or when it moved by more than 0.5 bpm.
            if bpm is not None and 20 <= bpm <= 400 and (
                    self._last_bpm is None or abs(bpm - self._last_bpm) > 0.5):
                self._last_bpm = bpm
                return [c.Tempo(round(bpm, 2))]
            return []
        if kind in ("start", "continue"):
            self.clock.reset()
            return [c.Transport(True)]
        if kind == "stop":
            return [c.Transport(False)]
        if kind == "control_change" and message.control in self.cc_map:
            name = self.cc_map[message.control]
            value = self.cc_value(name, message.value) if self.cc_value else message.value
            return [c.Set(name, value)]
        if kind == "program_change" and message.program < len(self.preset_names):
            return [c.LoadPreset(self.preset_names[message.program])]
        return []


class MidiIn:
    """Feeds routed MIDI commands to `handle`, from a port or a file.

    Args:
        router: MidiRouter (its cc_map may change when a preset loads).
        handle: called with each command.
    """

    def __init__(self, router: MidiRouter, handle: Callable[[c.Command], None]) -> None:
        self.router = router
        self.handle = handle
        self.port = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def _receive(self, message) -> None:
        for command in self.router.route(message):
            try:
                self.handle(command)
            except Exception:  # a bad MIDI message never stops input
                logger.exception("MIDI message %s failed", message)

    def open_port(self, name: str) -> bool:
        """Open an input port by (part of) its name; False, logged once, without a MIDI system."""
        try:
            import mido

            names = mido.get_input_names()
            match = next((n for n in names if n == name), None) or next(
                (n for n in names if name.lower() in n.lower()), None)
            if match is None:
                logger.warning("MIDI in: no input port matching %r (ports: %s); running without "
                               "MIDI", name, ", ".join(names) or "none")
                return False
            self.port = mido.open_input(match, callback=self._receive)
        except Exception as error:  # no ALSA sequencer, no backend: run on without MIDI
            logger.warning("MIDI in unavailable (%s: %s); running without MIDI",
                           type(error).__name__, error)
            return False
        logger.info("MIDI in: %s", match)
        return True

    def play_file(self, path: str | Path, realtime: bool = True) -> threading.Thread:
        """Play a MIDI file's messages into the router on a thread (tests, demos)."""
        import mido

        midi = mido.MidiFile(str(path))

        def run() -> None:
            messages = midi.play() if realtime else iter(midi)
            for message in messages:
                if self._stop.is_set():
                    return
                if not message.is_meta:
                    self._receive(message)

        self._thread = threading.Thread(target=run, name="indie-midi-file", daemon=True)
        self._thread.start()
        return self._thread

    def close(self) -> None:
        self._stop.set()
        if self.port is not None:
            self.port.close()
        if self._thread is not None:
            self._thread.join(2.0)


def read_midi_notes(path: str | Path) -> list[Note]:
    """Every note of a MIDI file (all tracks, all channels) in seconds, sorted by onset."""
    import mido

    held: dict[tuple[int, int], float] = {}
    notes = []
    now = 0.0
    for message in mido.MidiFile(str(path)):
        now += message.time
        if message.type == "note_on" and message.velocity > 0:
            held[(message.channel, message.note)] = now
        elif message.type in ("note_off", "note_on"):
            onset = held.pop((message.channel, message.note), None)
            if onset is not None and now > onset:
                notes.append(Note(message.note, onset, now))
    return sorted(notes, key=lambda n: (n.onset, n.pitch))
