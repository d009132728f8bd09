import numpy as np
import pytest

from engine.melody import Note, audio_to_chroma, crop_notes, notes_to_chroma, top_line


def naive_chroma(notes, frame_rate, num_frames, steps=200):
    """Reference: sample each frame finely and count which pitch class sounds longest."""
    chroma = np.zeros((12, num_frames), dtype=np.float32)
    for frame in range(num_frames):
        times = (frame + (np.arange(steps) + 0.5) / steps) / frame_rate
        counts = np.zeros(12)
        for pitch, onset, offset in notes:
            counts[pitch % 12] += np.count_nonzero((times >= onset) & (times < offset))
        if counts.max() > 0:
            chroma[counts.argmax(), frame] = 1
    return chroma


def test_notes_to_chroma_matches_a_naive_loop_on_random_notes():
    rng = np.random.default_rng(0)
    for _ in range(20):
        notes = []
        for _ in range(rng.integers(1, 12)):
            onset = rng.uniform(0, 4)
            notes.append(Note(int(rng.integers(40, 90)), onset, onset + rng.uniform(0.3, 1.5)))
        frame_rate = float(rng.choice([7.8125, 12.5, 50.0]))
        num_frames = int(5 * frame_rate)
        fast = notes_to_chroma(notes, frame_rate, num_frames)
        slow = naive_chroma(notes, frame_rate, num_frames)
        # Frames where two classes tie to within the sampling step may differ; allow a few.
        assert fast.shape == (12, num_frames)
        assert (fast.argmax(0) == slow.argmax(0)).mean() > 0.95
        np.testing.assert_array_equal(fast.sum(0) > 0, slow.sum(0) > 0)


def test_notes_to_chroma_is_one_hot_and_silent_where_no_note_sounds():
    chroma = notes_to_chroma([Note(62, 0.0, 1.0), Note(67, 2.0, 3.0)], 4.0, 16)
    assert chroma.dtype == np.float32
    assert set(np.unique(chroma.sum(0))) == {0.0, 1.0}
    assert chroma[2, :4].all() and chroma[7, 8:12].all()
    assert not chroma[:, 4:8].any() and not chroma[:, 12:].any()


def test_top_line_keeps_the_highest_note_and_cuts_overlaps():
    notes = [Note(60, 0, 2), Note(64, 0, 2), Note(67, 1, 3), Note(55, 3, 4)]
    assert top_line(notes) == [Note(64, 0, 1), Note(67, 1, 3), Note(55, 3, 4)]


def test_crop_notes_clips_and_shifts():
    notes = [Note(60, 0, 2), Note(62, 2, 5), Note(64, 6, 7)]
    assert crop_notes(notes, 1.0, 4.0) == [Note(60, 0.0, 1.0), Note(62, 1.0, 3.0)]


@pytest.mark.parametrize("frame_rate", [7.8125, 10.0])
def test_audio_chroma_of_a_sine_melody_finds_its_pitch_classes(frame_rate):
    rate = 32000
    melody = [Note(p, i * 0.5, (i + 1) * 0.5) for i, p in enumerate([57, 60, 64, 66, 71, 62])]
    t = np.arange(int(3.0 * rate)) / rate
    audio = np.zeros_like(t)
    for pitch, onset, offset in melody:
        tone = (t >= onset) & (t < offset)
        audio[tone] = 0.3 * np.sin(2 * np.pi * 440 * 2 ** ((pitch - 69) / 12) * t[tone])
    from_audio = audio_to_chroma(audio, rate, frame_rate, window_seconds=0.1)
    from_notes = notes_to_chroma(melody, frame_rate, from_audio.shape[1])
    assert from_audio.shape == from_notes.shape
    agree = (from_audio.argmax(0) == from_notes.argmax(0)).mean()
    assert agree > 0.8


def test_audio_chroma_is_empty_for_silence():
    assert not audio_to_chroma(np.zeros(32000), 32000, 8.0).any()
