"""The tempo estimator on click tracks and rendered notes at known tempi."""

import numpy as np
import pytest

from engine.evaluation.tempo import estimate_tempo, tempo_agreement
from tests.engine.evaluation.synth import RATE, beat_melody, click_track, render_notes


@pytest.mark.parametrize("bpm", [55, 72, 90, 110, 128, 150])
def test_click_tracks_give_their_tempo(bpm):
    estimate = estimate_tempo(click_track(bpm, 10.0), RATE)
    assert estimate.bpm == pytest.approx(bpm, rel=0.02)
    assert estimate.confidence > 0.5


@pytest.mark.parametrize("bpm", [66, 96, 132])
def test_rendered_melodies_give_their_tempo(bpm):
    notes = beat_melody([60, 62, 64, 65, 67, 65, 64, 62], bpm, 8.0)
    estimate = estimate_tempo(render_notes(notes, 8.0), RATE)
    assert tempo_agreement(estimate.bpm, bpm)["strict"], estimate


def test_fast_clicks_may_be_heard_at_half_tempo_and_count_as_octave_errors():
    estimate = estimate_tempo(click_track(200, 10.0), RATE)
    agreement = tempo_agreement(estimate.bpm, 200)
    assert agreement["octave"]  # 200 or 100: never an unrelated tempo


def test_agreement_separates_strict_hits_octave_errors_and_misses():
    assert tempo_agreement(121.0, 120) == {"relative_error": pytest.approx(1 / 120),
                                           "strict": True, "octave": True,
                                           "octave_error": False}
    half = tempo_agreement(60.5, 120)
    assert (half["strict"], half["octave"], half["octave_error"]) == (False, True, True)
    miss = tempo_agreement(90.0, 120)
    assert (miss["strict"], miss["octave"]) == (False, False)


def test_silence_has_no_tempo():
    estimate = estimate_tempo(np.zeros(RATE * 4, dtype=np.float32), RATE)
    assert np.isnan(estimate.bpm) and estimate.confidence == 0.0
    assert tempo_agreement(estimate.bpm, 100)["strict"] is False
