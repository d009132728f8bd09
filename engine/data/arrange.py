"""From a score to a performance: ensemble, tempo, transposition and dynamics, chosen by seed.

The choices are the labels of the clip (family, BPM, key, dynamics), so they are exact: the tempo
is constant, the transposition is known, and the melody is read from the notes we play.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.data.accompany import accompany
from engine.data.corpus import Source
from engine.data.ensembles import FAMILIES, Family, Voice, assign_voices
from engine.data.score import PieceScore, ScoreNote
from engine.melody import Note, top_line

DYNAMICS = {"soft": 52, "moderate": 74, "loud": 98}  # base MIDI velocity
_PITCH_RANGE = (28, 100)  # transpositions keep every note inside the well-sampled range
_STRUCK_PROGRAMS = {0, 6, 11, 12, 24, 25, 32, 46}  # plucked / struck: strike chords per beat
# Key names as musicians spell them (D-flat major, but C-sharp minor).
_TONICS = {"major": ("C", "Db", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B"),
           "minor": ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "G#", "A", "Bb", "B")}


@dataclass(frozen=True)
class Arrangement:
    """The seeded choices for one piece (everything a caption may mention)."""

    family: str
    voices: tuple[Voice, ...]  # one per part, then the accompaniment's chord and bass voices
    bpm: int  # quarter notes per minute
    transpose: int  # semitones
    dynamics: str
    reverb: int  # MIDI CC 91, 0..127
    accompanied: bool

    def key_name(self, piece: PieceScore) -> str:
        return f"{_TONICS[piece.mode][(piece.tonic + self.transpose) % 12]} {piece.mode}"


@dataclass(frozen=True)
class Track:
    """One instrument's notes in quarter notes, with velocities."""

    voice: Voice
    notes: tuple[tuple[int, float, float, int], ...]  # (pitch, onset, duration, velocity)


@dataclass(frozen=True)
class Performance:
    """What FluidSynth plays, plus the melody and the bar lines in seconds."""

    bpm: int
    tracks: tuple[Track, ...]
    reverb: int
    melody: tuple[Note, ...]
    bar_lines: tuple[float, ...]
    seconds: float  # end of the last note

    def to_seconds(self, quarters: float) -> float:
        return quarters * 60.0 / self.bpm


def bar_quarters(meter: str) -> float:
    """Quarter notes in a bar of `meter` ("6/8" → 3.0)."""
    numerator, denominator = meter.split("/")
    return int(numerator) * 4.0 / int(denominator)


def choose_arrangement(piece: PieceScore, source: Source, rng: np.random.Generator,
                       accompany_probability: float) -> Arrangement:
    """Draw the ensemble, tempo, transposition and dynamics for one piece."""
    family: Family = FAMILIES[source.families[rng.integers(len(source.families))]]
    accompanied = len(piece.parts) == 1 and rng.random() < accompany_probability
    voices = assign_voices(family, len(piece.parts))
    if accompanied:
        voices = voices + list(family.accompaniment)
    beat_bpm = rng.uniform(*source.beat_bpm)
    bpm = int(np.clip(round(beat_bpm * piece.beat_quarters), 40, 240))
    return Arrangement(
        family=family.name,
        voices=tuple(voices),
        bpm=bpm,
        transpose=_choose_transposition(piece, rng),
        dynamics=str(rng.choice(list(DYNAMICS))),
        reverb=int(rng.integers(20, 90)),
        accompanied=accompanied,
    )


def _choose_transposition(piece: PieceScore, rng: np.random.Generator) -> int:
    pitches = [n.pitch for part in piece.parts for n in part]
    low, high = min(pitches), max(pitches)
    lowest, highest = _PITCH_RANGE
    allowed = [t for t in range(-5, 7) if low + t >= lowest and high + t <= highest]
    return int(rng.choice(allowed)) if allowed else 0


def perform(piece: PieceScore, arrangement: Arrangement, rng: np.random.Generator,
            max_seconds: float) -> Performance:
    """Turn the score and the arrangement into velocity-shaped tracks, cut at `max_seconds`."""
    parts = [list(p) for p in piece.parts]
    beat = piece.beat_quarters
    if arrangement.accompanied:
        chord_voice = arrangement.voices[-2]
        chords, bass = accompany(parts[0], piece.bar_lines,
                                 round(bar_quarters(piece.meter) / beat), beat, piece.tonic,
                                 piece.mode, struck=chord_voice.program in _STRUCK_PROGRAMS)
        parts += [chords, bass]
    end_quarters = max_seconds * arrangement.bpm / 60.0
    base = DYNAMICS[arrangement.dynamics]
    tracks = []
    for index, (voice, notes) in enumerate(zip(arrangement.voices, parts, strict=False)):
        # The melody stands out a little; an added accompaniment sits back.
        lift = 6 if index == 0 and len(parts) > 1 else (-14 if index >= len(piece.parts) else 0)
        played = []
        for pitch, onset, duration in notes:
            if onset >= end_quarters:
                continue
            accent = _accent(onset, piece.bar_lines, beat)
            velocity = int(np.clip(base + lift + accent + rng.normal(0, 4), 12, 127))
            duration = min(duration, end_quarters - onset)
            played.append((pitch + arrangement.transpose, onset, duration, velocity))
        if played:
            tracks.append(Track(voice, tuple(played)))
    return _assemble(piece, arrangement, tracks, end_quarters)


def _assemble(piece: PieceScore, arrangement: Arrangement, tracks: list[Track],
              end_quarters: float) -> Performance:
    spb = 60.0 / arrangement.bpm  # seconds per quarter note
    melody_score = [ScoreNote(p, o, d) for p, o, d, _ in tracks[0].notes]
    melody = top_line(Note(n.pitch, n.onset * spb, (n.onset + n.duration) * spb)
                      for n in melody_score)
    last = max(o + d for t in tracks for _, o, d, _ in t.notes)
    return Performance(
        bpm=arrangement.bpm,
        tracks=tuple(tracks),
        reverb=arrangement.reverb,
        melody=tuple(melody),
        bar_lines=tuple(b * spb for b in piece.bar_lines if b < end_quarters),
        seconds=last * spb,
    )


def _accent(onset: float, bar_lines: tuple[float, ...], beat: float) -> int:
    """Louder on the downbeat, a little on other beats: the player's sense of metre."""
    index = np.searchsorted(bar_lines, onset, side="right") - 1
    if index < 0:
        return 0
    position = onset - bar_lines[index]
    if abs(position) < 1e-6:
        return 8
    return 3 if abs(position / beat - round(position / beat)) < 1e-6 else 0
