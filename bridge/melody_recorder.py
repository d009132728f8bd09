"""The melody a player plays (MIDI or /indie/melody/note), recorded as timestamped notes.

Generation uses the recorded phrase (timed from its first note, reduced to its top line);
live mode uses the current note (the one held, else the last one played).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

from engine.melody import Note, top_line

MAX_NOTES = 256
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
        self._held: dict[int, float] = {}
        self._last_pitch: int | None = None
        self.version = 0  # bumped on every note-on: live mode restarts on a change
        self.last_note_time: float | None = None

    def note(self, pitch: int, velocity: int, when: float | None = None) -> None:
        """Note on (velocity > 0) or off (velocity 0)."""
        when = self._clock() if when is None else when
        with self._lock:
            onset = self._held.pop(pitch, None)
            if onset is not None:
                self._closed.append((pitch, onset, when))
            if velocity > 0:
                if self._closed and not self._held and when - self._last_end() > PHRASE_GAP_SECONDS:
                    self._closed.clear()  # a new phrase
                self._held[pitch] = when
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
            if self._held:
                return max(self._held.items(), key=lambda item: (item[1], item[0]))[0]
            return self._last_pitch

    def _last_end(self) -> float:
        return max(off for _, _, off in self._closed)
