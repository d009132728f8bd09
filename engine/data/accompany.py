"""A simple accompaniment for single-line tunes: a chord and a bass note per half bar.

Folk tunes in the corpus are bare melodies; played alone they teach the model only solo timbres.
Each bar (or half bar, in metres of four beats) gets the diatonic triad that best covers the
melody notes sounding in it, which is how a session guitarist would busk along.
"""

from __future__ import annotations

from collections.abc import Sequence

from engine.data.score import ScoreNote

# Diatonic triads as (root offset from the tonic, quality) with a prior that favours the
# primary chords; the tonic chord also closes the tune.
_MAJOR_CHORDS = ((0, "maj", 0.3), (5, "maj", 0.2), (7, "maj", 0.2), (9, "min", 0.1),
                 (2, "min", 0.05))
_MINOR_CHORDS = ((0, "min", 0.3), (5, "min", 0.2), (7, "maj", 0.2), (8, "maj", 0.1),
                 (3, "maj", 0.1), (10, "maj", 0.05))
_TRIADS = {"maj": (0, 4, 7), "min": (0, 3, 7)}
_CHORD_LOW, _BASS_LOW = 52, 36  # lowest MIDI pitch of the chord voicing and of the bass


def harmonic_windows(bar_lines: Sequence[float], beats_per_bar: int, beat: float,
                     end: float) -> list[tuple[float, float]]:
    """(start, end) spans in quarter notes that each get one chord."""
    starts = []
    for i, bar in enumerate(bar_lines):
        bar_end = bar_lines[i + 1] if i + 1 < len(bar_lines) else end
        starts.append(bar)
        if beats_per_bar == 4 and bar_end - bar > 2 * beat:  # two chords per bar of four
            starts.append(bar + 2 * beat)
    starts = [s for s in starts if s < end]
    return [(s, e) for s, e in zip(starts, starts[1:] + [end], strict=False) if e > s]


def choose_chord(melody: Sequence[ScoreNote], start: float, end: float, tonic: int, mode: str,
                 closing: bool) -> tuple[int, tuple[int, ...]]:
    """The triad (root pitch class, chord pitch classes) that best fits the melody in a window."""
    chords = _MAJOR_CHORDS if mode == "major" else _MINOR_CHORDS
    best, best_score = None, float("-inf")
    for offset, quality, prior in chords:
        root = (tonic + offset) % 12
        classes = tuple((root + i) % 12 for i in _TRIADS[quality])
        score = prior + (0.5 if closing and offset == 0 else 0.0)
        for pitch, onset, duration in melody:
            overlap = min(end, onset + duration) - max(start, onset)
            if overlap > 0:
                # Notes on the window's first beat weigh double: they define the harmony.
                weight = overlap * (2.0 if onset <= start + 1e-6 else 1.0)
                score += weight if pitch % 12 in classes else -0.5 * weight
        if score > best_score:
            best, best_score = (root, classes), score
    return best


def accompany(melody: Sequence[ScoreNote], bar_lines: Sequence[float], beats_per_bar: int,
              beat: float, tonic: int, mode: str, *, struck: bool
              ) -> tuple[list[ScoreNote], list[ScoreNote]]:
    """Chord and bass parts for a tune.

    Args:
        melody: the tune's notes in quarter notes.
        bar_lines: full-bar onsets in quarter notes.
        beats_per_bar: beats in a bar of the metre (two chords per bar when it is four).
        beat: quarter notes per beat.
        tonic, mode: the key.
        struck: strike the chord on every beat (piano, guitar) instead of holding it (pad, strings).

    Returns:
        (chord notes, bass notes), both in quarter notes.
    """
    if not melody or not bar_lines:
        return [], []
    end = max(n.onset + n.duration for n in melody)
    windows = harmonic_windows(bar_lines, beats_per_bar, beat, end)
    chord_notes, bass_notes = [], []
    for i, (start, stop) in enumerate(windows):
        closing = i == len(windows) - 1
        root, classes = choose_chord(melody, start, stop, tonic, mode, closing)
        bass_notes.append(ScoreNote(_BASS_LOW + (root - _BASS_LOW) % 12, start, stop - start))
        voicing = sorted(_CHORD_LOW + (pc - _CHORD_LOW) % 12 for pc in classes)
        strikes = [start]
        if struck:
            while strikes[-1] + beat < stop - 1e-6:
                strikes.append(strikes[-1] + beat)
        for j, onset in enumerate(strikes):
            length = (strikes[j + 1] if j + 1 < len(strikes) else stop) - onset
            chord_notes.extend(ScoreNote(p, onset, length) for p in voicing)
    return chord_notes, bass_notes
