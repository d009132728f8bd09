"""Reconstruction losses: zero at identity, monotone in noise, hear pitch not phase, finite
gradients (silence included), cached transforms, weighted sums, and SI-SDR."""

import math

import pytest
import torch

from engine.losses import (
    MelSpectrograms,
    ReconstructionConfig,
    l1_loss,
    mel_distance,
    mel_loss,
    reconstruction_terms,
    si_sdr,
    weighted_sum,
)

RATE = 32000
N = RATE // 2  # 0.5 s keeps every test well under a second on a busy CPU
TERMS = ("recon/mel", "recon/stft", "recon/l1")


@pytest.fixture(scope="module")
def config() -> ReconstructionConfig:
    return ReconstructionConfig()


@pytest.fixture(scope="module")
def mels(config: ReconstructionConfig) -> MelSpectrograms:
    return MelSpectrograms(config)


def tone(freq: float, phase: float = 0.0, amp: float = 0.5, envelope: bool = False) -> torch.Tensor:
    """[1, 1, N] sine; with `envelope`, faded in and out so no frame sees an abrupt edge."""
    t = torch.arange(N) / RATE
    x = amp * torch.sin(2 * math.pi * freq * t + phase)
    if envelope:
        x = x * torch.hann_window(N, periodic=False)
    return x.reshape(1, 1, N)


def noise(seed: int = 0, batch: int = 1) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 1, N, generator=generator)


def test_terms_are_zero_for_identical_audio(mels, config):
    target = tone(440) + 0.05 * noise()
    terms = reconstruction_terms(target.clone(), target, mels, config)
    assert set(terms) == set(TERMS)
    for name in TERMS:
        assert terms[name].dim() == 0
        assert terms[name].item() == pytest.approx(0.0, abs=1e-6), name
    assert mel_distance(target.clone(), target, mels) == pytest.approx(0.0, abs=1e-6)


def test_terms_grow_with_noise_amplitude(mels, config):
    target = tone(440)
    disturbance = noise(seed=1)
    values = {name: [] for name in TERMS}
    for amplitude in (0.003, 0.03, 0.3):
        terms = reconstruction_terms(target + amplitude * disturbance, target, mels, config)
        for name in TERMS:
            values[name].append(terms[name].item())
    for name, series in values.items():
        assert series[0] > 0, name
        assert series[0] < series[1] < series[2], (name, series)


def test_mel_loss_hears_a_semitone_but_not_a_phase_shift(mels):
    # A quarter-period phase shift and a semitone (440 -> 466 Hz) move the waveform by the same
    # L2 distance; only the semitone is audible, and only the mel loss tells them apart.
    target = tone(440, envelope=True)
    semitone = tone(466.16, envelope=True)
    shifted = tone(440, phase=math.pi / 2, envelope=True)
    l2_semitone = (semitone - target).norm()
    l2_shifted = (shifted - target).norm()
    assert l2_semitone.item() == pytest.approx(l2_shifted.item(), rel=0.02)
    assert l1_loss(semitone, target).item() == pytest.approx(
        l1_loss(shifted, target).item(), rel=0.25
    )
    assert mel_loss(semitone, target, mels) > 3 * mel_loss(shifted, target, mels)
    # A polarity flip doubles the waveform and is inaudible: the mel loss ignores it.
    assert mel_loss(-target, target, mels).item() == pytest.approx(0.0, abs=1e-6)


def test_mel_l2_option_adds_to_the_l1(mels):
    target = tone(440)
    pred = target + 0.1 * noise()
    assert mel_loss(pred, target, mels, l2_weight=1.0) > mel_loss(pred, target, mels)


@pytest.mark.parametrize(
    "make_pred, make_target",
    [
        (lambda: 0.1 * noise(seed=2), lambda: tone(440)),
        (lambda: torch.zeros(1, 1, N), lambda: torch.zeros(1, 1, N)),  # silence: log floor
        (lambda: torch.zeros(1, 1, N), lambda: tone(440)),
        (lambda: tone(440), lambda: torch.zeros(1, 1, N)),
    ],
    ids=["noise-vs-tone", "silence-vs-silence", "silence-vs-tone", "tone-vs-silence"],
)
def test_gradients_reach_pred_and_are_finite(mels, config, make_pred, make_target):
    pred = make_pred().requires_grad_(True)
    terms = reconstruction_terms(pred, make_target(), mels, config)
    for name in TERMS:
        assert torch.isfinite(terms[name]), name
    sum(terms.values()).backward()
    assert pred.grad is not None
    assert torch.isfinite(pred.grad).all()
    if pred.detach().abs().sum() > 0:
        assert pred.grad.abs().sum() > 0


def test_mel_transforms_are_built_once_and_hold_buffers(mels):
    first = mels.transform(1024)
    mel_loss(tone(440), tone(466), mels)
    mel_loss(tone(440), tone(466), mels)
    assert mels.transform(1024) is first
    buffers = dict(mels.named_buffers())
    for window in (512, 1024, 2048):
        assert buffers[f"transforms.{window}.mel_scale.fb"].shape[1] == 64
    with pytest.raises(KeyError, match="4096"):
        mels.transform(4096)


def test_log_mels_have_one_tensor_per_window(mels):
    logmels = mels(tone(440))
    assert [m.shape for m in logmels] == [(1, 1, 64, N // (w // 4) + 1) for w in (512, 1024, 2048)]


def test_shape_mismatch_is_an_error(mels, config):
    with pytest.raises(ValueError, match="shapes differ"):
        reconstruction_terms(torch.zeros(1, 1, N), torch.zeros(1, 1, N - 1), mels, config)


def test_weighted_sum_matches_hand_computation():
    terms = {
        "recon/mel": torch.tensor(1.5),
        "recon/l1": torch.tensor(2.0),
        "recon/stft": torch.tensor(7.0),
    }
    total = weighted_sum(terms, {"recon/mel": 2.0, "recon/l1": 0.1})
    assert total.item() == pytest.approx(2.0 * 1.5 + 0.1 * 2.0)  # recon/stft: logged only


def test_weighted_sum_keeps_gradients():
    x = torch.tensor(3.0, requires_grad=True)
    weighted_sum({"a": x * x, "b": x}, {"a": 0.5, "b": 2.0}).backward()
    assert x.grad.item() == pytest.approx(0.5 * 2 * 3.0 + 2.0)


def test_weighted_sum_rejects_a_weight_without_its_term():
    terms = {"recon/mel": torch.tensor(1.0)}
    with pytest.raises(KeyError, match="vq/commit"):
        weighted_sum(terms, {"recon/mel": 2.0, "vq/commit": 1.0})
    with pytest.raises(ValueError, match="no loss weights"):
        weighted_sum(terms, {})


def test_si_sdr_identical_and_scaled_copies_are_very_high():
    target = tone(440) + 0.1 * noise()
    assert si_sdr(target.clone(), target).item() > 60
    assert si_sdr(0.3 * target, target).item() > 60
    assert si_sdr(-2.0 * target, target).item() > 60  # the least-squares gain may be negative


def test_si_sdr_is_scale_invariant():
    target = tone(440)
    pred = target + 0.05 * noise(seed=3)
    reference = si_sdr(pred, target)
    assert si_sdr(4.0 * pred, target).item() == pytest.approx(reference.item(), abs=1e-3)
    assert si_sdr(pred + 0.2, target).item() == pytest.approx(reference.item(), abs=1e-3)


@pytest.mark.parametrize("snr_db", [0.0, 10.0, 25.0])
def test_si_sdr_recovers_a_known_snr(snr_db):
    target = torch.cat([tone(440), tone(220) + tone(660, amp=0.2)])  # [2, 1, N]
    disturbance = noise(seed=4, batch=2)
    disturbance = disturbance - disturbance.mean(dim=-1, keepdim=True)
    signal_power = target.pow(2).sum(dim=(1, 2), keepdim=True)  # [2, 1, 1]
    noise_power = disturbance.pow(2).sum(dim=(1, 2), keepdim=True)  # [2, 1, 1]
    disturbance = disturbance * (signal_power / noise_power / 10 ** (snr_db / 10)).sqrt()
    values = si_sdr(target + disturbance, target)
    assert values.shape == (2,)
    assert values.tolist() == pytest.approx([snr_db, snr_db], abs=0.5)


def test_si_sdr_of_silence_is_finite():
    silent = torch.zeros(2, 1, N)
    assert torch.isfinite(si_sdr(silent, silent)).all()
    assert torch.isfinite(si_sdr(tone(440).expand(2, 1, N), silent)).all()
