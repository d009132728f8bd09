"""The melody a player plays (MIDI or /indie/melody/note), recorded as timestamped notes.

Generation uses the recorded phrase (timed from its first note, reduced to its top line);
live mode uses the current note (the one held, else the last one played).

Whatever arrives, the record stays bounded in count and time: a note whose note-off was lost
ends after MAX_HOLD_SECONDS (so it cannot keep the phrase open, or be the current note,
forever), at most MAX_HELD notes are held at once, at most MAX_NOTES finished notes are kept,
and notes that started more than MAX_PHRASE_SECONDS before the newest one are dropped.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

from engine.melody import Note, top_line

MAX_NOTES = 256
MAX_HELD = 16
MAX_HOLD_SECONDS = 16.0
MAX_PHRASE_SECONDS = 60.0
# A pause this long ends a phrase: the next note starts a new one.
PHRASE_GAP_SECONDS = 4.0


class MelodyRecorder:
    """Thread-safe note recorder.

    Args:
        clock: seconds, monotonic (tests pass a fake clock).
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._closed: deque[tuple[int, float, float]] = deque(maxlen=MAX_NOTES)
        self._held: dict[int, float] = {}  # pitch → onset
        self._last_pitch: int | None = None
        self.version = 0  # bumped on every note-on: live mode restarts on a change
        self.last_note_time: float | None = None

    def note(self, pitch: int, velocity: int, when: float | None = None) -> None:
        """Note on (velocity > 0) or off (velocity 0); pitches outside 0..127 are ignored."""
        if not 0 <= pitch <= 127:
            return
        when = self._clock() if when is None else when
        with self._lock:
            self._expire(when)
            onset = self._held.pop(pitch, None)
            if onset is not None:
                self._closed.append((pitch, onset, when))
            if velocity > 0:
                if self._closed and not self._held and when - self._last_end() > PHRASE_GAP_SECONDS:
                    self._closed.clear()  # a new phrase
                if len(self._held) >= MAX_HELD:  # let the oldest held note go
                    oldest = min(self._held, key=self._held.__getitem__)
                    self._closed.append((oldest, self._held.pop(oldest), when))
                self._held[pitch] = when
                self._drop_started_before(when - MAX_PHRASE_SECONDS)
                self._last_pitch = pitch
                self.version += 1
                self.last_note_time = when

    def clear(self) -> None:
        with self._lock:
            self._closed.clear()
            self._held.clear()
            self._last_pitch = None
            self.version += 1

    def phrase(self, max_seconds: float) -> list[Note]:
        """The recorded phrase as a monophonic line, timed from its first note (seconds)."""
        now = self._clock()
        with self._lock:
            self._expire(now)
            raw = list(self._closed) + [(p, on, now) for p, on in self._held.items()]
        if not raw:
            return []
        start = min(on for _, on, _ in raw)
        notes = [Note(p, on - start, min(off - start, max_seconds)) for p, on, off in raw
                 if on - start < max_seconds]
        return top_line(notes)

    def current_pitch(self) -> int | None:
        """The held note that started last, else the last note played, else None."""
        with self._lock:
            self._expire(self._clock())
            if self._held:
                return max(self._held.items(), key=lambda item: (item[1], item[0]))[0]
            return self._last_pitch

    def held_count(self) -> int:
        with self._lock:
            return len(self._held)

    def _expire(self, now: float) -> None:
        """End held notes whose note-off is overdue (a lost note-off), at MAX_HOLD_SECONDS."""
        for pitch, onset in list(self._held.items()):
            if now - onset > MAX_HOLD_SECONDS:
                del self._held[pitch]
                self._closed.append((pitch, onset, onset + MAX_HOLD_SECONDS))

    def _drop_started_before(self, cutoff: float) -> None:
        if self._closed and min(on for _, on, _ in self._closed) < cutoff:
            kept = [note for note in self._closed if note[1] >= cutoff]
            self._closed = deque(kept, maxlen=MAX_NOTES)

    def _last_end(self) -> float:
        return max(off for _, _, off in self._closed)
