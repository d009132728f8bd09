"""Fréchet distance, posterior KL, label adherence and chroma similarity."""

import numpy as np
import pytest

from engine.evaluation.metrics import (
    chroma_similarity,
    frechet_distance,
    label_adherence,
    posterior_kl,
)
from tests.engine.evaluation.synth import RATE, beat_melody, render_notes


def test_frechet_distance_of_a_set_with_itself_is_zero_and_grows_with_noise():
    rng = np.random.default_rng(0)
    embeddings = rng.normal(size=(200, 16)) @ rng.normal(size=(16, 16))  # correlated features
    assert frechet_distance(embeddings, embeddings) == pytest.approx(0.0, abs=1e-3)
    distances = [frechet_distance(embeddings, embeddings + rng.normal(0, s, embeddings.shape))
                 for s in (0.1, 0.5, 1.0, 2.0)]
    assert distances[0] > 0.01
    assert all(a < b for a, b in zip(distances, distances[1:], strict=False)), distances


def test_frechet_distance_matches_the_closed_form_for_shifted_gaussians():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(20000, 4))
    b = rng.normal(size=(20000, 4)) * 2.0 + 3.0  # mean shift 3 per dim, std 2
    # ||3·1||² + tr(I + 4I − 2·2I) = 36 + 4
    assert frechet_distance(a, b) == pytest.approx(40.0, rel=0.03)


def test_frechet_distance_rejects_mismatched_or_tiny_sets():
    with pytest.raises(ValueError):
        frechet_distance(np.zeros((5, 3)), np.zeros((5, 4)))
    with pytest.raises(ValueError):
        frechet_distance(np.zeros((1, 3)), np.zeros((5, 3)))


def test_posterior_kl_is_zero_for_equal_posteriors_and_positive_otherwise():
    p = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
    q = np.array([[0.1, 0.2, 0.7], [0.1, 0.1, 0.8]])
    kl = posterior_kl(p, q)
    assert kl[1] == pytest.approx(0.0, abs=1e-9)
    expected = 0.7 * np.log(0.7 / 0.1) + 0.1 * np.log(0.1 / 0.7)
    assert kl[0] == pytest.approx(expected)


def test_label_adherence_counts_matches():
    assert label_adherence(["a", "b", "c", "a"], ["a", "b", "x", "x"]) == 0.5
    with pytest.raises(ValueError):
        label_adherence(["a"], [])


def test_chroma_similarity_is_higher_for_the_matching_melody():
    seconds = 6.0
    melody = beat_melody([60, 64, 67, 72, 67, 64], 100, seconds)  # C major arpeggio
    other = beat_melody([61, 66, 70, 63], 100, seconds)  # other pitch classes
    audio = render_notes(melody, seconds)
    matching = chroma_similarity(melody, audio, RATE)
    mismatched = chroma_similarity(other, audio, RATE)
    assert matching > 0.8
    assert mismatched < 0.2
    silent = chroma_similarity(melody, np.zeros_like(audio), RATE)
    assert silent == 0.0  # a silent output never matches
    assert chroma_similarity([], audio, RATE) is None  # no melody: nothing to compare
