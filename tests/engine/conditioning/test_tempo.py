"""Tempo features: log-BPM and beat phase against hand-computed values."""

import math

import torch

from engine.conditioning.tempo import NUM_BPM_FEATURES, PHASE_PERIODS, bpm_features, phase_features


def test_beat_phase_per_frame():
    # 120 BPM = a beat every 0.5 s = 25 frames at 50 frames/s; first downbeat at 0.1 s (frame 5).
    bpm, offset = torch.tensor([120.0]), torch.tensor([0.1])
    frames = torch.arange(0, 120)
    features = phase_features(bpm, offset, frames, 50.0)[0]  # [S, 2P]
    P = len(PHASE_PERIODS)
    for frame in range(120):
        beats = (frame / 50.0 - 0.1) * 2.0
        for i, period in enumerate(PHASE_PERIODS):
            angle = 2 * math.pi * beats / period
            assert abs(features[frame, i] - math.sin(angle)) < 1e-5
            assert abs(features[frame, P + i] - math.cos(angle)) < 1e-5
    # Downbeats (frames 5, 105: 4 beats apart) have phase 0 at every period.
    assert torch.allclose(features[5, P:], torch.ones(P), atol=1e-6)
    assert torch.allclose(features[105, P:], torch.ones(P), atol=1e-6)
    # Half a beat later the beat's cosine is -1.
    assert abs(features[5 + 12, P + PHASE_PERIODS.index(1.0)] + 0.998) < 0.01


def test_no_tempo_gives_zeros_and_bpm_features_are_distinct():
    features = bpm_features(torch.tensor([0.0, 60.0, 120.0, 121.0, 240.0]))
    assert features.shape == (5, NUM_BPM_FEATURES)
    assert (features[0] == 0).all()
    assert (features[2] == torch.tensor([0.0] + [0.0] * 4 + [1.0] * 4)).all()  # log(120/120)
    assert features[1, 0] < 0 < features[4, 0]
    assert not torch.allclose(features[2], features[3])
    phases = phase_features(torch.tensor([0.0]), torch.tensor([0.3]), torch.arange(10), 50.0)
    assert (phases == 0).all()


def test_phase_stays_exact_far_into_a_long_clip():
    bpm, offset = torch.tensor([97.0]), torch.tensor([0.0])
    far = phase_features(bpm, offset, torch.tensor([10**6]), 50.0)
    beats = 10**6 / 50.0 * 97.0 / 60.0
    assert abs(far[0, 0, 2] - math.sin(2 * math.pi * (beats % 1.0))) < 1e-5
