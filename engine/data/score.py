"""A parsed score reduced to plain data: parts of notes in quarter notes, metre, key and bars.

Everything after this module works on `PieceScore` and never touches music21 objects, which keeps
the arranging and rendering code pure and testable without parsing.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from music21.stream import Score

# Repeats are expanded only for short pieces: long ones are cut to `max_piece_seconds` anyway.
_EXPAND_REPEATS_BELOW = 200.0  # quarter notes


class ScoreNote(NamedTuple):
    """A note in score time: MIDI pitch, onset and duration in quarter notes."""

    pitch: int
    onset: float
    duration: float


@dataclass(frozen=True)
class PieceScore:
    """The musical content of one piece.

    Attributes:
        parts: parts sorted from the highest to the lowest mean pitch; the first holds the melody.
        meter: time signature at the start ("3/4").
        beat_quarters: quarter notes per felt beat (6/8 → 1.5, 4/2 → 2).
        bar_lines: onsets of the full bars, in quarter notes (a pickup bar is not a bar line).
        tonic: pitch class of the key's tonic (0 = C).
        mode: "major" or "minor".
        length: end of the last note, in quarter notes.
    """

    parts: tuple[tuple[ScoreNote, ...], ...]
    meter: str
    beat_quarters: float
    bar_lines: tuple[float, ...]
    tonic: int
    mode: str
    length: float


class EmptyScoreError(ValueError):
    """The score has no pitched notes we can play."""


def extract(score: Score) -> PieceScore:
    """Reduce a music21 score to a `PieceScore` (repeats expanded for short pieces)."""
    if score.highestTime < _EXPAND_REPEATS_BELOW:
        # Malformed repeat marks raise all kinds of errors: then play the score as written.
        with contextlib.suppress(Exception):
            score = score.expandRepeats()
    parts = [notes for notes in (_part_notes(part) for part in score.parts) if notes]
    if not parts:
        raise EmptyScoreError("no pitched notes")
    parts.sort(key=lambda notes: -sum(n.pitch for n in notes) / len(notes))
    signature = score.recurse().getElementsByClass("TimeSignature").first()
    meter = signature.ratioString if signature else "4/4"
    beat = float(signature.beatDuration.quarterLength) if signature else 1.0
    key = score.analyze("key")
    return PieceScore(
        parts=tuple(tuple(p) for p in parts),
        meter=meter,
        beat_quarters=beat,
        bar_lines=_bar_lines(score),
        tonic=key.tonic.pitchClass,
        mode="minor" if key.mode == "minor" else "major",
        length=max(n.onset + n.duration for part in parts for n in part),
    )


def _part_notes(part) -> list[ScoreNote]:
    """Sounding notes of one part (ties merged, chords split, grace notes dropped)."""
    notes = []
    for element in part.stripTies().flatten().notes:
        duration = float(element.duration.quarterLength)
        if duration <= 0:  # grace notes have no duration of their own
            continue
        onset = float(element.offset)
        for pitch in getattr(element, "pitches", ()):
            notes.append(ScoreNote(int(pitch.midi), onset, duration))
    notes.sort()
    return notes


def _bar_lines(score: Score) -> tuple[float, ...]:
    first_part = score.parts[0] if score.parts else score
    measures = first_part.getElementsByClass("Measure")
    return tuple(float(m.offset) for m in measures if not m.paddingLeft)
