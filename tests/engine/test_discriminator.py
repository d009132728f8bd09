"""MS-STFT discriminator: output shapes, a training step that helps, hinge and feature-matching
losses, and gradients that reach the codec's output but not the frozen discriminator."""

import math

import pytest
import torch

from engine.discriminator import (
    DiscriminatorConfig,
    DiscriminatorOutput,
    MultiScaleSTFTDiscriminator,
    adversarial_terms,
    discriminator_loss,
    feature_matching_loss,
    frozen,
    generator_adversarial_loss,
)

RATE = 32000
N = RATE // 2  # 0.5 s
SMALL = DiscriminatorConfig(enabled=True, channels=4, windows=(512, 256, 128))  # fast on CPU


def sines(batch: int, seed: int = 0) -> torch.Tensor:
    """[batch, 1, N] sines at random pitches and amplitudes."""
    generator = torch.Generator().manual_seed(seed)
    freqs = 110 + 770 * torch.rand(batch, 1, 1, generator=generator)
    amps = 0.2 + 0.5 * torch.rand(batch, 1, 1, generator=generator)
    t = torch.arange(N) / RATE
    return amps * torch.sin(2 * math.pi * freqs * t)


def noise(batch: int, seed: int = 1) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return 0.3 * torch.randn(batch, 1, N, generator=generator)


def make(config: DiscriminatorConfig = SMALL) -> MultiScaleSTFTDiscriminator:
    torch.manual_seed(0)
    return MultiScaleSTFTDiscriminator(config)


def halvings(size: int, times: int) -> int:
    for _ in range(times):
        size = (size - 1) // 2 + 1  # kernel 9, padding 4, stride 2
    return size


@pytest.mark.parametrize("batch", [1, 3])
def test_output_shapes_for_every_scale(batch):
    config = DiscriminatorConfig()  # the default: 3 scales, 16 channels
    with torch.no_grad():
        outputs = make(config)(noise(batch))
    assert len(outputs) == 3
    for window, output in zip(config.windows, outputs, strict=True):
        assert isinstance(output, DiscriminatorOutput)
        frames = N // (window // 4) + 1
        freq = halvings(window // 2 + 1, 3)
        assert output.logits.shape == (batch, 1, frames, freq)
        assert len(output.features) == 5
        assert output.features[0].shape == (batch, config.channels, frames, window // 2 + 1)
        assert output.features[-1].shape == (batch, config.channels, frames, freq)


def test_rejects_non_mono_audio():
    with pytest.raises(ValueError, match=r"\[B, 1, N\]"):
        make()(torch.zeros(2, 2, N))


def test_one_step_lowers_the_discriminator_loss():
    discriminator = make()
    optimizer = torch.optim.Adam(
        discriminator.parameters(), lr=SMALL.learning_rate, betas=SMALL.betas
    )
    real, fake = sines(2), noise(2)
    before = discriminator_loss(discriminator(real), discriminator(fake))
    optimizer.zero_grad()
    before.backward()
    optimizer.step()
    with torch.no_grad():
        after = discriminator_loss(discriminator(real), discriminator(fake))
    assert after < before


def test_hinge_losses_on_known_logits():
    def output(value: float) -> DiscriminatorOutput:
        return DiscriminatorOutput(logits=torch.full((2, 1, 3, 4), value), features=[])

    # relu(1 - 0.5) + relu(1 + (-2)) = 0.5, then relu(1 - 3) + relu(1 + 0) = 1: mean 0.75.
    loss = discriminator_loss([output(0.5), output(3.0)], [output(-2.0), output(0.0)])
    assert loss.item() == pytest.approx(0.75)
    assert generator_adversarial_loss([output(0.5), output(3.0)]).item() == pytest.approx(0.25)


def test_feature_matching_is_zero_for_identical_audio():
    audio = sines(2)
    terms = adversarial_terms(make(), audio, audio.clone())
    assert set(terms) == {"adv/gen", "adv/feat"}
    assert terms["adv/feat"].item() == pytest.approx(0.0, abs=1e-7)
    assert terms["adv/gen"].item() > 0


def test_feature_matching_is_relative_to_real_features():
    discriminator = make()
    with torch.no_grad():
        real = discriminator(sines(1))
        fake = discriminator(noise(1))
    doubled = [DiscriminatorOutput(o.logits, [2 * f for f in o.features]) for o in real]
    # Each layer's L1 is divided by its mean |real|: doubling the real maps gives exactly 1.
    assert feature_matching_loss(real, doubled).item() == pytest.approx(1.0, rel=1e-5)
    assert feature_matching_loss(real, fake).item() > 0


def test_adversarial_terms_train_the_generator_not_the_discriminator():
    discriminator = make()
    pred = noise(2).requires_grad_(True)
    terms = adversarial_terms(discriminator, pred, sines(2))
    (terms["adv/gen"] + terms["adv/feat"]).backward()
    assert pred.grad is not None
    assert torch.isfinite(pred.grad).all() and pred.grad.abs().sum() > 0
    assert all(p.grad is None for p in discriminator.parameters())
    assert all(p.requires_grad for p in discriminator.parameters())  # restored after the forward


def test_frozen_discriminator_passes_gradients_through():
    discriminator = make()
    pred = noise(1).requires_grad_(True)
    with frozen(discriminator):
        assert not any(p.requires_grad for p in discriminator.parameters())
        loss = generator_adversarial_loss(discriminator(pred))
    loss.backward()
    assert pred.grad is not None and pred.grad.abs().sum() > 0
    assert all(p.grad is None for p in discriminator.parameters())


def test_discriminator_step_on_detached_pred_leaves_the_generator_alone():
    discriminator = make()
    pred = noise(1).requires_grad_(True)
    loss = discriminator_loss(discriminator(sines(1)), discriminator(pred.detach()))
    loss.backward()
    assert pred.grad is None
    assert all(p.grad is not None for p in discriminator.parameters())
