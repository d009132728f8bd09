"""Small synthetic signals for the evaluation tests: click tracks and melodies of tones."""

from __future__ import annotations

import numpy as np

from engine.melody import Note

RATE = 32000


def click_track(bpm: float, seconds: float, rate: int = RATE, accent: int = 4) -> np.ndarray:
    """A 1 kHz click on every beat, louder on every `accent`-th beat."""
    out = np.zeros(int(seconds * rate))
    t = np.arange(int(0.02 * rate)) / rate
    click = np.sin(2 * np.pi * 1000 * t) * np.exp(-200 * t)
    for i, onset in enumerate(np.arange(0.0, seconds, 60.0 / bpm)):
        start = int(onset * rate)
        piece = click[: len(out) - start]
        out[start: start + len(piece)] += (1.0 if i % accent == 0 else 0.5) * piece
    return out.astype(np.float32)


def render_notes(notes: list[Note], seconds: float, rate: int = RATE,
                 harmonics: tuple[float, ...] = (1.0, 0.5, 0.25)) -> np.ndarray:
    """Notes as harmonic tones with a short attack and a decay (a plucked-string caricature)."""
    out = np.zeros(int(seconds * rate))
    for pitch, onset, offset in notes:
        start, stop = int(onset * rate), min(int(offset * rate), len(out))
        t = np.arange(stop - start) / rate
        f0 = 440.0 * 2 ** ((pitch - 69) / 12)
        tone = sum(a * np.sin(2 * np.pi * f0 * (h + 1) * t) for h, a in enumerate(harmonics))
        out[start:stop] += tone * np.minimum(1.0, 200 * t) * np.exp(-3 * t)
    return (0.3 * out / max(np.abs(out).max(), 1e-9)).astype(np.float32)


def beat_melody(pitches: list[int], bpm: float, seconds: float) -> list[Note]:
    """One note per beat, cycling through `pitches`."""
    beat = 60.0 / bpm
    onsets = np.arange(0.0, seconds - 1e-9, beat)
    return [Note(pitches[i % len(pitches)], float(t), float(min(t + beat, seconds)))
            for i, t in enumerate(onsets)]
