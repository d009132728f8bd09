"""MIDI in: a port by name (python-rtmidi) or a MIDI file, turned into session commands.

Note on/off → /indie/melody/note; MIDI clock (24 per quarter note) → /indie/tempo; start/stop →
live mode on/off; a CC in the preset's CC map → /indie/set; program change N → the N-th preset
(alphabetical). Both sources go through the same path as raw bytes (`receive_bytes`, what rtmidi
delivers), so garbage on the wire meets one decoder. Where the machine has no MIDI system (no
ALSA sequencer), opening a port fails, the bridge logs it once and runs on without MIDI.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from bridge.midi_bytes import MidiDecoder
from bridge.midi_clock import ClockTempo
from bridge.osc import commands as c
from engine.inputs import DRUM_CHANNEL, open_midi_file
from engine.inputs import read_midi_notes as read_midi_notes  # one reader for MIDI files

logger = logging.getLogger(__name__)

# A repeat of the same start or stop this soon after the last is the same press (floods).
TRANSPORT_REPEAT_SECONDS = 0.25


class MidiRouter:
    """Turns mido messages into commands (pure but for the clock and transport state).

    Notes on the General MIDI drum channel are not melody and are skipped.

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
        self._transport: tuple[bool, float] | None = None  # the last (start?, time) passed on

    def route(self, message, when: float | None = None) -> list[c.Command]:
        when = time.monotonic() if when is None else when
        kind = message.type
        if kind in ("note_on", "note_off"):
            if message.channel == DRUM_CHANNEL:
                return []
            velocity = message.velocity if kind == "note_on" else 0
            return [c.MelodyNote(message.note, velocity)]
        if kind == "clock":
            bpm = self.clock.tick(when)  # None, or within the clock's sane range
            # Announce a tempo once, then when it moved by more than 0.5 bpm.
            if bpm is not None and (self._last_bpm is None or abs(bpm - self._last_bpm) > 0.5):
                self._last_bpm = bpm
                return [c.Tempo(round(bpm, 2))]
            return []
        if kind in ("start", "continue", "stop"):
            return self._transport_change(kind != "stop", when)
        if kind == "control_change" and message.control in self.cc_map:
            name = self.cc_map[message.control]
            value = self.cc_value(name, message.value) if self.cc_value else message.value
            return [c.Set(name, value)]
        if kind == "program_change" and message.program < len(self.preset_names):
            return [c.LoadPreset(self.preset_names[message.program])]
        return []

    def _transport_change(self, start: bool, when: float) -> list[c.Command]:
        last = self._transport
        if last is not None and last[0] == start and when - last[1] < TRANSPORT_REPEAT_SECONDS:
            return []  # the same press again: a flood must not restart live mode each time
        self._transport = (start, when)
        if start:
            self.clock.reset()
        return [c.Transport(start)]


class MidiIn:
    """Feeds routed MIDI commands to `handle`, from a port or a file, through raw bytes.

    Args:
        router: MidiRouter (its cc_map may change when a preset loads).
        handle: called with each command.
    """

    def __init__(self, router: MidiRouter, handle: Callable[[c.Command], None]) -> None:
        self.router = router
        self.handle = handle
        self.decoder = MidiDecoder()
        self.port = None
        self._lock = threading.Lock()  # a port's thread and a file's thread share the decoder
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def receive_bytes(self, data: bytes | Sequence[int], when: float | None = None,
                      whole: bool = False) -> None:
        """Decode and route raw MIDI bytes: any part of a stream, or (`whole`) whole messages
        as rtmidi delivers them."""
        with self._lock:
            commands = [command for message in self.decoder.feed(data, whole=whole)
                        for command in self.router.route(message, when)]
        for command in commands:
            try:
                self.handle(command)
            except Exception:  # a bad MIDI message never stops input
                logger.exception("MIDI command %s failed", command)

    def _on_rtmidi(self, event: tuple[Sequence[int], float], data: object = None) -> None:
        """rtmidi's callback: ([bytes of one message], seconds since the previous one)."""
        self.receive_bytes(event[0], whole=True)

    def open_port(self, name: str) -> bool:
        """Open an input port by (part of) its name, on each MIDI system rtmidi knows (ALSA,
        then JACK, on Linux); False, logged once, where none has it."""
        try:
            import rtmidi
        except ImportError as error:
            logger.warning("MIDI in unavailable (%s); running without MIDI", error)
            return False
        seen: list[str] = []
        for api in rtmidi.get_compiled_api():
            try:
                port = rtmidi.MidiIn(rtapi=api)
                names = port.get_ports()
            except Exception as error:  # this MIDI system does not run here (no ALSA sequencer)
                seen.append(f"{rtmidi.get_api_display_name(api)}: {error}")
                continue
            match = next((n for n in names if n == name), None) or next(
                (n for n in names if name.lower() in n.lower()), None)
            if match is None:
                port.delete()
                seen += names
                continue
            try:
                port.open_port(names.index(match))
                # No sysex: the bridge has no use for it, so a flood never reaches Python.
                port.ignore_types(sysex=True, timing=False, active_sense=True)
                port.set_callback(self._on_rtmidi)
            except Exception as error:  # the port went away, or is busy
                port.delete()
                seen.append(f"{match}: {error}")
                continue
            self.port = port
            logger.info("MIDI in: %s", match)
            return True
        logger.warning("MIDI in: no input port matching %r (seen: %s); running without MIDI",
                       name, "; ".join(seen) or "none")
        return False

    def play_file(self, path: str | Path, realtime: bool = True) -> threading.Thread:
        """Play a MIDI file's messages into the router on a thread (tests, demos).

        Raises:
            EngineError: a missing, too large or unreadable file.
        """
        midi = open_midi_file(path)

        def run() -> None:
            messages = midi.play() if realtime else iter(midi)
            for message in messages:
                if self._stop.is_set():
                    return
                if not message.is_meta:
                    self.receive_bytes(message.bytes(), whole=True)

        self._thread = threading.Thread(target=run, name="indie-midi-file", daemon=True)
        self._thread.start()
        return self._thread

    def close(self) -> None:
        self._stop.set()
        if self.port is not None:
            self.port.cancel_callback()
            self.port.close_port()
            self.port.delete()
            self.port = None
        if self._thread is not None:
            self._thread.join(2.0)
