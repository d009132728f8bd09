"""Tempo from MIDI clock (24 ticks per quarter note), sane under jitter, lost ticks and bursts.

The tick interval is the slope of a least-squares line through the last WINDOW_TICKS ticks
(arrival time against tick number), which averages out jitter far better than the span of one
beat. Each tick is numbered by where it falls on that line (before the first line: by its gap
in units of the median gap), so a lost tick counts two steps instead of bending the line, and
one late tick does not shift the next. A tick that falls on or before the previous number (a
burst) or halfway between two numbers (ambiguous) is left out; a gap longer than
MAX_GAP_SECONDS (the clock stopped), more than MAX_STEPS lost ticks in a row, too many
irregular ticks within a beat (the tempo jumped) or a whole window of ticks far from their line
start the estimate afresh. No tempo is returned before two beats of ticks, while the ticks
stray from the line, or outside MIN_BPM..MAX_BPM.
"""

from __future__ import annotations

from collections import deque
from itertools import pairwise
from statistics import median

import numpy as np

CLOCKS_PER_BEAT = 24
MIN_BPM, MAX_BPM = 20.0, 300.0
WINDOW_TICKS = 4 * CLOCKS_PER_BEAT  # the fit spans four beats
MIN_TICKS = 2 * CLOCKS_PER_BEAT + 1  # a tempo needs two whole beats of ticks
LINE_TICKS = 8  # enough ticks to number the next ones by a line
MAX_AMBIGUITY = 0.35  # how far from a whole tick number a tick may fall and still be used
MAX_SPREAD = 0.25  # RMS distance of ticks from the line, in ticks, above which none is trusted
MAX_STEPS = 4  # up to three lost ticks in a row
MAX_GAP_SECONDS = MAX_STEPS * 60.0 / MIN_BPM / CLOCKS_PER_BEAT  # 0.5 s
MAX_IRREGULAR = CLOCKS_PER_BEAT // 4  # lost or burst ticks per beat before starting afresh


class ClockTempo:
    """Feed it clock tick times; it returns the tempo once it is known."""

    def __init__(self) -> None:
        self._ticks: deque[tuple[int, float]] = deque(maxlen=WINDOW_TICKS)  # (number, time)
        self._irregular: deque[bool] = deque(maxlen=CLOCKS_PER_BEAT)
        self._line: tuple[float, float] | None = None  # time ≈ a + b * number, the last fit

    def reset(self) -> None:
        self._ticks.clear()
        self._irregular.clear()
        self._line = None

    def tick(self, when: float) -> float | None:
        """Record a tick at `when` (seconds); returns the tempo in BPM, or None."""
        if not self._ticks:
            self._ticks.append((0, when))
            return None
        number, last = self._ticks[-1]
        gap = when - last
        if not 0.0 < gap <= MAX_GAP_SECONDS:  # stopped, restarted, or time ran backwards
            return self._restart(when)
        position = self._position(number, gap, when)
        steps = round(position)
        if steps > MAX_STEPS:
            return self._restart(when)
        # A tick halfway between two numbers could be either: it is left out of the fit.
        clear = steps >= 1 and abs(position - steps) <= MAX_AMBIGUITY
        self._irregular.append(steps != 1 or not clear)
        if sum(self._irregular) > MAX_IRREGULAR:
            return self._restart(when)
        if not clear:  # a burst (too early to be the next tick) or an ambiguous tick
            return None
        self._ticks.append((number + steps, when))
        return self._fit()

    def _restart(self, when: float) -> None:
        self.reset()
        self._ticks.append((0, when))
        return None

    def _position(self, number: int, gap: float, when: float) -> float:
        """Ticks (fractional) from the last one to this one: by the fitted line, else by the
        median gap."""
        if self._line is not None:
            a, b = self._line
            return (when - a) / b - number
        gaps = [(t1 - t0) / (n1 - n0) for (n0, t0), (n1, t1) in pairwise(self._ticks)]
        return gap / median(gaps) if gaps else 1.0

    def _fit(self) -> float | None:
        if len(self._ticks) < LINE_TICKS:
            return None
        numbers = np.array([n for n, _ in self._ticks], dtype=np.float64)
        times = np.array([t for _, t in self._ticks], dtype=np.float64)
        centred = numbers - numbers.mean()
        slope = float(centred @ (times - times.mean()) / (centred @ centred))
        if slope <= 0.0:
            return None
        intercept = float(times.mean() - slope * numbers.mean())
        self._line = (intercept, slope)
        spread = float(np.sqrt(np.mean((times - intercept - slope * numbers) ** 2)))
        if spread > MAX_SPREAD * slope:  # ticks numbered wrongly, or a clock gone wild
            if len(self._ticks) == WINDOW_TICKS:  # for a whole window: start afresh
                self._restart(float(times[-1]))
            return None
        if len(self._ticks) < MIN_TICKS:
            return None
        bpm = 60.0 / (slope * CLOCKS_PER_BEAT)
        return bpm if MIN_BPM <= bpm <= MAX_BPM else None
