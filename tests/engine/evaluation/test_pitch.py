"""Pitch accuracy of a rendered melody line with torchcrepe."""

import numpy as np
import pytest

from engine.evaluation.pitch import melody_frames, pitch_accuracy
from engine.melody import Note
from tests.engine.evaluation.synth import RATE, beat_melody, render_notes

pytest.importorskip("torchcrepe")


def test_melody_frames_take_the_top_note_and_leave_rests_empty():
    frames = melody_frames([Note(60, 0.0, 0.1), Note(64, 0.04, 0.08)], 8)  # 20 ms frames
    assert frames[:5].tolist() == [60, 60, 64, 64, 60]
    assert np.isnan(frames[5:]).all()


def test_pitch_accuracy_is_high_for_the_played_melody_and_low_for_another():
    seconds = 3.0
    melody = beat_melody([67, 69, 71, 72, 74, 72], 120, seconds)
    audio = render_notes(melody, seconds)
    played = pitch_accuracy(melody, audio, RATE)
    assert played.raw_pitch > 0.7 and played.raw_chroma >= played.raw_pitch
    transposed = [Note(p + 5, on, off) for p, on, off in melody]  # a fourth higher
    assert pitch_accuracy(transposed, audio, RATE).raw_pitch < 0.2
    octave = [Note(p + 12, on, off) for p, on, off in melody]
    scored = pitch_accuracy(octave, audio, RATE)
    assert scored.raw_pitch < 0.2 and scored.raw_chroma > 0.7  # octave folded
    assert pitch_accuracy([], audio, RATE) is None
