"""Ensembles, accompaniment, arrangement, MIDI writing and clip cutting: pure, no FluidSynth."""

import mido
import numpy as np
import pytest

from engine.data.accompany import accompany, choose_chord, harmonic_windows
from engine.data.arrange import bar_quarters, choose_arrangement, perform
from engine.data.clips import cut_clips, normalise, rms_db
from engine.data.corpus import SOURCES
from engine.data.ensembles import FAMILIES, assign_voices, describe
from engine.data.midi import TICKS_PER_QUARTER, performance_to_midi
from engine.data.score import PieceScore, ScoreNote
from engine.melody import top_line


def chorale(parts=4, bars=8):
    """A tiny four-part score in D minor, 4/4: each part plays quarter notes."""
    notes = []
    for index in range(parts):
        base = 74 - 7 * index
        notes.append(tuple(ScoreNote(base + (q % 3), float(q), 1.0) for q in range(4 * bars)))
    return PieceScore(parts=tuple(notes), meter="4/4", beat_quarters=1.0,
                      bar_lines=tuple(4.0 * b for b in range(bars)), tonic=2, mode="minor",
                      length=4.0 * bars)


def test_every_source_names_known_families():
    for source in SOURCES.values():
        assert set(source.families) <= set(FAMILIES)


@pytest.mark.parametrize("family", sorted(FAMILIES))
@pytest.mark.parametrize("parts", [1, 2, 3, 4, 5, 8])
def test_assign_voices_gives_one_voice_per_part_high_to_low(family, parts):
    voices = assign_voices(FAMILIES[family], parts)
    assert len(voices) == parts
    assert voices[0] == FAMILIES[family].voices[0]
    # The chosen voices walk down the family's list (repeats allowed, never back up).
    position = 0
    for voice in voices:
        while FAMILIES[family].voices[position] != voice:
            position += 1  # IndexError here means a voice out of order


def test_describe_names_the_instruments():
    strings = FAMILIES["strings"]
    quartet = describe(strings, assign_voices(strings, 4))
    assert quartet == "a string quartet (violin, viola and cello)"
    assert describe(strings, assign_voices(strings, 1)) == "solo violin"
    assert describe(FAMILIES["piano"], assign_voices(FAMILIES["piano"], 4)) == "solo piano"


def test_choose_chord_fits_the_melody():
    c_major_arpeggio = [ScoreNote(60, 0, 1), ScoreNote(64, 1, 1), ScoreNote(67, 2, 1)]
    assert choose_chord(c_major_arpeggio, 0, 4, tonic=0, mode="major", closing=False)[1] == (
        0, 4, 7)
    g_notes = [ScoreNote(67, 0, 1), ScoreNote(71, 1, 1), ScoreNote(62, 2, 2)]
    assert choose_chord(g_notes, 0, 4, tonic=0, mode="major", closing=False)[0] == 7


def test_accompaniment_covers_every_bar_below_the_melody():
    melody = [ScoreNote(72 + (q % 5), float(q), 1.0) for q in range(16)]
    assert harmonic_windows([0, 4, 8, 12], 4, 1.0, 16.0) == [
        (0, 2), (2, 4), (4, 6), (6, 8), (8, 10), (10, 12), (12, 14), (14, 16)]
    chords, bass = accompany(melody, [0.0, 4.0, 8.0, 12.0], 4, 1.0, 0, "major", struck=True)
    assert len(bass) == 8 and all(36 <= n.pitch < 48 for n in bass)
    assert len(chords) == 3 * 16  # a triad on every beat
    assert max(n.pitch for n in chords) < min(n.pitch for n in melody)


def test_bar_quarters():
    assert bar_quarters("6/8") == 3.0 and bar_quarters("4/2") == 8.0 and bar_quarters("3/4") == 3


def test_arrangement_follows_the_source_and_keeps_pitches_in_range():
    piece = chorale()
    for seed in range(30):
        arrangement = choose_arrangement(piece, SOURCES["bach"], np.random.default_rng(seed), 0.7)
        assert arrangement.family in SOURCES["bach"].families
        low, high = SOURCES["bach"].beat_bpm
        assert low - 1 <= arrangement.bpm <= high + 1
        assert -5 <= arrangement.transpose <= 6
        assert not arrangement.accompanied  # four parts need no accompaniment
        assert len(arrangement.voices) == 4


def test_performance_melody_is_the_transposed_top_part_in_seconds():
    piece = chorale()
    rng = np.random.default_rng(3)
    arrangement = choose_arrangement(piece, SOURCES["bach"], rng, 0.0)
    performance = perform(piece, arrangement, rng, max_seconds=1000)
    seconds = 60.0 / arrangement.bpm
    expected = top_line(
        [type(performance.melody[0])(n.pitch + arrangement.transpose, n.onset * seconds,
                                     (n.onset + n.duration) * seconds) for n in piece.parts[0]])
    assert list(performance.melody) == expected
    assert performance.bar_lines[1] == pytest.approx(4 * seconds)
    velocities = [v for track in performance.tracks for *_, v in track.notes]
    assert min(velocities) >= 12 and max(velocities) <= 127


def test_single_line_tunes_get_chord_and_bass_tracks_and_long_pieces_are_cut():
    tune = chorale(parts=1, bars=40)
    rng = np.random.default_rng(0)
    arrangement = choose_arrangement(tune, SOURCES["essenFolksong"], rng, 1.0)
    assert arrangement.accompanied and len(arrangement.voices) == 3
    performance = perform(tune, arrangement, rng, max_seconds=20.0)
    assert len(performance.tracks) == 3
    assert performance.seconds <= 20.0 + 1e-9


def test_midi_file_plays_the_performance_at_its_tempo(tmp_path):
    piece = chorale(parts=2, bars=2)
    rng = np.random.default_rng(1)
    performance = perform(piece, choose_arrangement(piece, SOURCES["bach"], rng, 0), rng, 1000)
    path = tmp_path / "piece.mid"
    performance_to_midi(performance, piece.meter).save(path)
    midi = mido.MidiFile(path)
    assert midi.ticks_per_beat == TICKS_PER_QUARTER
    onsets, now = [], 0.0
    for message in midi:  # iterating a MidiFile yields delta times in seconds
        now += message.time
        if message.type == "note_on" and message.velocity > 0:
            onsets.append((round(now, 4), message.note))
    expected = sorted((round(performance.to_seconds(o), 4), p)
                      for track in performance.tracks for p, o, _, _ in track.notes)
    assert sorted(onsets) == expected


def test_clips_are_cut_to_length_and_silence_is_dropped():
    rate = 1000
    audio = np.concatenate([np.full(2500, 0.1), np.zeros(1500), np.full(200, 0.1)])
    spans = cut_clips(audio, rate, clip_seconds=1.0, min_clip_seconds=0.5, silence_db=-45)
    # The silent fourth second is dropped, and so is the 0.2 s tail (shorter than 0.5 s).
    assert [(s.start, s.stop) for s in spans] == [(0, 1000), (1000, 2000), (2000, 3000)]
    tail = cut_clips(audio[:3600], rate, 1.0, 0.5, -45)
    assert [(s.start, s.stop) for s in tail][-1] == (2000, 3000)
    kept_tail = cut_clips(np.full(2600, 0.1), rate, 1.0, 0.5, -45)
    assert [(s.start, s.stop) for s in kept_tail] == [(0, 1000), (1000, 2000), (2000, 2600)]


def test_normalise_reaches_the_dynamics_level_without_clipping():
    rng = np.random.default_rng(0)
    audio = 0.01 * rng.standard_normal(32000)
    assert rms_db(normalise(audio, "soft")) == pytest.approx(-26.0, abs=0.1)
    spiky = audio.copy()
    spiky[100] = 5.0
    assert np.abs(normalise(spiky, "loud")).max() <= 0.98 + 1e-6
