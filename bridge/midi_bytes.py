"""Raw MIDI bytes → mido messages, whatever a port or a stream delivers.

rtmidi hands over whole messages, one per callback (`whole=True`: nothing carries over between
them); a serial or network stream may split messages or run them together. The decoder holds
at most one message's bytes, so garbage cannot grow it: running status (data bytes after a
channel message reuse its status byte) is followed, realtime bytes (clock, start, stop) count
anywhere, even inside another message, system exclusive is skipped without being stored, and
stray data bytes, undefined status bytes and messages cut short by a new status byte are
dropped and counted.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import mido

SYSEX_START, SYSEX_END = 0xF0, 0xF7
# Data bytes after each status byte (channel messages by their high nibble).
_CHANNEL_DATA = {0x80: 2, 0x90: 2, 0xA0: 2, 0xB0: 2, 0xC0: 1, 0xD0: 1, 0xE0: 2}
_SYSTEM_DATA = {0xF1: 1, 0xF2: 2, 0xF3: 1, 0xF6: 0}
_REALTIME = frozenset({0xF8, 0xFA, 0xFB, 0xFC, 0xFE, 0xFF})  # 0xF9 and 0xFD are undefined
_STATUS_BYTE = re.compile(rb"[\x80-\xff]")


@dataclass
class DecoderStats:
    """What the decoder has seen so far."""

    messages: int = 0
    sysex: int = 0  # system exclusive messages skipped
    dropped_bytes: int = 0  # stray data, undefined status, cut-off messages, bad input


class MidiDecoder:
    """Feed it bytes in any chunks; it returns the complete messages they finish."""

    def __init__(self) -> None:
        self.stats = DecoderStats()
        self._running = 0  # the channel status byte that lone data bytes reuse
        self._status = 0  # the status byte of the message being read, 0 when none
        self._data: list[int] = []
        self._in_sysex = False

    def feed(self, data: bytes | bytearray | Sequence[int], *,
             whole: bool = False) -> list[mido.Message]:
        """The messages `data` completes.

        Args:
            data: MIDI bytes, any part of a stream.
            whole: `data` is whole messages (what rtmidi's callback delivers): nothing carries
                over from earlier data, so a malformed message (rtmidi delivers those too under
                a flood) cannot be read as running status after a good one.
        """
        if whole:
            self._forget()
        try:
            raw = bytes(data)
        except (TypeError, ValueError):  # values outside 0..255: not MIDI at all
            self.stats.dropped_bytes += _length(data)
            return []
        messages: list[mido.Message] = []
        i = 0
        while i < len(raw):
            if self._in_sysex or not (self._status or self._running):
                # Nothing to add data bytes to: jump to the next status byte in C, so that a
                # 64 KB sysex costs microseconds, not a Python loop per byte.
                found = _STATUS_BYTE.search(raw, i)
                end = found.start() if found else len(raw)
                if not self._in_sysex:
                    self.stats.dropped_bytes += end - i
                i = end
                if found is None:
                    break
            byte = raw[i]
            i += 1
            if byte >= 0x80:
                self._status_byte(byte, messages)
            else:
                self._data_byte(byte, messages)
        return messages

    def _forget(self) -> None:
        if self._status:
            self.stats.dropped_bytes += 1 + len(self._data)
        self._status, self._data, self._running = 0, [], 0
        if self._in_sysex:
            self._in_sysex = False
            self.stats.sysex += 1

    def _status_byte(self, byte: int, out: list[mido.Message]) -> None:
        if byte >= 0xF8:  # realtime: never interrupts the message around it
            if byte in _REALTIME:
                self._emit([byte], out)
            else:
                self.stats.dropped_bytes += 1
            return
        if self._in_sysex:
            self._in_sysex = False
            self.stats.sysex += 1
            if byte == SYSEX_END:
                return
        if self._status:  # a message cut short by this status byte
            self.stats.dropped_bytes += 1 + len(self._data)
            self._status, self._data = 0, []
        if byte < 0xF0:
            self._status = self._running = byte
            return
        self._running = 0  # system messages cancel running status
        if byte == SYSEX_START:
            self._in_sysex = True
        elif byte not in _SYSTEM_DATA:  # 0xF4, 0xF5 or an end without a start
            self.stats.dropped_bytes += 1
        elif _SYSTEM_DATA[byte] == 0:
            self._emit([byte], out)
        else:
            self._status = byte

    def _data_byte(self, byte: int, out: list[mido.Message]) -> None:
        if not self._status:
            self._status = self._running  # running status: the feed loop ensures one is set
        self._data.append(byte)
        if len(self._data) == _data_length(self._status):
            self._emit([self._status, *self._data], out)
            self._status, self._data = 0, []

    def _emit(self, message_bytes: list[int], out: list[mido.Message]) -> None:
        try:
            out.append(mido.Message.from_bytes(message_bytes))
        except ValueError:  # mido refuses it: count it, never raise into the port's thread
            self.stats.dropped_bytes += len(message_bytes)
            return
        self.stats.messages += 1


def _data_length(status: int) -> int:
    return _CHANNEL_DATA[status & 0xF0] if status < 0xF0 else _SYSTEM_DATA[status]


def _length(data: object) -> int:
    try:
        return len(data)  # type: ignore[arg-type]
    except TypeError:
        return 0
