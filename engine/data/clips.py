"""Loudness and cutting: a rendered piece becomes level-matched clips, silent ones dropped."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

# Target RMS per dynamics (dBFS): loud clips are louder, but none clips.
TARGET_RMS_DB = {"soft": -26.0, "moderate": -21.0, "loud": -17.0}
_PEAK = 0.98


class ClipSpan(NamedTuple):
    """A clip's place in the piece, in samples."""

    start: int
    stop: int


def rms_db(samples: np.ndarray) -> float:
    """Root-mean-square level in dBFS (−inf-safe)."""
    return float(10 * np.log10(np.mean(np.square(samples, dtype=np.float64)) + 1e-20))


def normalise(samples: np.ndarray, dynamics: str) -> np.ndarray:
    """Scale a piece to the RMS level of its dynamics, lowered if the peak would pass 0.98."""
    level = rms_db(samples)
    if not np.isfinite(level) or level < -100:
        return samples.astype(np.float32)
    gain = 10 ** ((TARGET_RMS_DB[dynamics] - level) / 20)
    peak = float(np.max(np.abs(samples))) * gain
    if peak > _PEAK:
        gain *= _PEAK / peak
    return (samples * gain).astype(np.float32)


def cut_clips(samples: np.ndarray, sample_rate: int, clip_seconds: float,
              min_clip_seconds: float, silence_db: float) -> list[ClipSpan]:
    """Consecutive clips of `clip_seconds`; a shorter tail is kept if it lasts `min_clip_seconds`.

    Clips whose RMS is below `silence_db` (a rest, a reverb tail) are dropped.
    """
    length = int(round(clip_seconds * sample_rate))
    shortest = int(round(min_clip_seconds * sample_rate))
    spans = []
    for start in range(0, len(samples), length):
        stop = min(start + length, len(samples))
        if stop - start >= shortest and rms_db(samples[start:stop]) >= silence_db:
            spans.append(ClipSpan(start, stop))
    return spans
