"""The LM: shapes, causality, streaming equals forward, loss, dropout, and learning."""

import dataclasses

import pytest
import torch

from engine.conditioning import Conditions
from engine.lm import LanguageModel, LMConfig, drop_conditions, lm_loss
from engine.patterns import PATTERNS, get_pattern

K, N = 4, 16


def tiny(pattern: str = "delay", **overrides) -> LanguageModel:
    config = LMConfig(num_codebooks=K, codebook_size=N, dim=32, num_layers=2, num_heads=4,
                      ffn_mult=2, max_steps=64, text_dim=24, pattern=pattern, **overrides)
    return LanguageModel(config).eval()


def conditions(frames: int, batch: int = 2, seed: int = 0) -> Conditions:
    g = torch.Generator().manual_seed(seed)
    text = torch.randn(batch, 5, 24, generator=g)
    mask = torch.ones(batch, 5, dtype=torch.bool)
    mask[0, 3:] = False  # rows of different text lengths
    if batch > 1:
        mask[-1] = False  # a row without text
    melody = torch.zeros(batch, 12, frames)
    melody[:, torch.randint(0, 12, (frames,), generator=g), torch.arange(frames)] = 1.0
    bpm = torch.tensor([96.0, 0.0] + [140.0] * (batch - 2))[:batch]
    return Conditions(text=text, text_mask=mask, melody=melody, bpm=bpm,
                      beat_offset=torch.full((batch,), 0.13))


def random_sequence(pattern: str, frames: int, batch: int = 2, seed: int = 0) -> torch.Tensor:
    codes = torch.randint(0, N, (batch, K, frames), generator=torch.Generator().manual_seed(seed))
    return get_pattern(pattern).interleave(codes, N)


def test_forward_shapes_and_all_finite_even_without_text():
    lm, frames = tiny(), 7
    sequence = random_sequence("delay", frames)
    logits = lm(sequence, conditions(frames))
    assert logits.shape == (2, K, frames + K - 1, N)
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("positions", ["alibi", "sinusoidal"])
def test_forward_is_causal(positions):
    lm, frames = tiny(positions=positions), 8
    sequence = random_sequence("delay", frames)
    cond = conditions(frames)
    changed = sequence.clone()
    changed[:, :, 6] = (changed[:, :, 6] + 1) % N
    a, b = lm(sequence, cond), lm(changed, cond)
    # Logits at step s see steps < s: changing step 6 leaves steps 0..6 alone, moves step 7.
    assert torch.allclose(a[:, :, :7], b[:, :, :7], atol=1e-6)
    assert not torch.allclose(a[:, :, 7:], b[:, :, 7:], atol=1e-4)


@pytest.mark.parametrize("positions", ["alibi", "sinusoidal"])
@pytest.mark.parametrize("pattern", PATTERNS)
def test_streaming_steps_equal_forward(pattern, positions):
    lm, frames = tiny(pattern, positions=positions), 6
    sequence = random_sequence(pattern, frames)
    cond = conditions(frames)
    S = sequence.shape[-1]
    full = lm(sequence, cond)  # [B, K, S, N]
    inputs = torch.cat([torch.full((2, K, 1), N), sequence], dim=-1)  # [B, K, S + 1]
    # One step at a time after a prefill of 3 steps, and a second prefill of 2 in the middle.
    state = lm.start(cond, S)
    sizes, fed = [3, 1, 1, 2] + [1] * S, 0
    for n in sizes:
        n = min(n, S - fed)
        if n == 0:
            break
        logits = lm.step(state, inputs[:, :, fed:fed + n])
        fed += n
        assert logits.shape == (2, K, N)
        assert torch.allclose(logits, full[:, :, fed - 1], atol=1e-4), (pattern, fed)
    assert fed == S == state.position


@pytest.mark.parametrize("positions", ["alibi", "sinusoidal"])
def test_one_prefill_of_everything_equals_forward_last_step(positions):
    lm, frames = tiny(positions=positions), 5
    sequence = random_sequence("delay", frames)
    cond = conditions(frames)
    state = lm.start(cond, 32)  # a cache larger than needed
    inputs = torch.cat([torch.full((2, K, 1), N), sequence[:, :, :-1]], dim=-1)
    assert torch.allclose(lm.step(state, inputs), lm(sequence, cond)[:, :, -1], atol=1e-4)
    assert state.keys[0].shape[2] == 32


def test_step_refuses_to_run_past_the_cache():
    lm = tiny()
    state = lm.start(conditions(4), 3)
    lm.step(state, torch.full((2, K, 3), N))
    with pytest.raises(ValueError, match="exceed"):
        lm.step(state, torch.full((2, K, 1), N))


def test_conditions_change_the_output():
    lm, frames = tiny(), 6
    sequence = random_sequence("delay", frames, batch=1)
    cond = conditions(frames, batch=1)
    base = lm(sequence, cond)
    for name, other in [("bpm", dataclasses.replace(cond, bpm=torch.tensor([150.0]))),
                        ("melody", dataclasses.replace(cond, melody=torch.zeros(1, 12, frames))),
                        ("text", dataclasses.replace(cond, text_mask=torch.zeros_like(
                            cond.text_mask))),
                        ("offset", dataclasses.replace(cond, beat_offset=torch.tensor([0.3])))]:
        assert not torch.allclose(lm(sequence, other), base, atol=1e-5), name


def test_loss_counts_only_valid_positions():
    logits = torch.randn(2, K, 6, N)
    sequence = torch.randint(0, N, (2, K, 6))
    valid = torch.zeros(K, 6, dtype=torch.bool)
    valid[1, 2] = True
    loss = lm_loss(logits, sequence, valid)
    expected = torch.nn.functional.cross_entropy(logits[:, 1, 2], sequence[:, 1, 2])
    assert torch.allclose(loss.total, expected)
    assert torch.allclose(loss.per_codebook[1], expected)
    assert torch.equal(loss.per_codebook[[0, 2, 3]], torch.zeros(3))


def test_condition_dropout_drops_rows_with_the_configured_rates():
    config = LMConfig(condition_dropout=0.25, melody_dropout=0.5, tempo_dropout=0.0)
    batch, frames = 4000, 3
    cond = Conditions(text=torch.ones(batch, 2, 384), text_mask=torch.ones(batch, 2, dtype=bool),
                      melody=torch.ones(batch, 12, frames), bpm=torch.full((batch,), 100.0),
                      beat_offset=torch.full((batch,), 0.5))
    dropped = drop_conditions(cond, config, torch.Generator().manual_seed(0))
    no_text = ~dropped.text_mask.any(dim=1)
    no_melody = dropped.melody.sum(dim=(1, 2)) == 0
    no_tempo = dropped.bpm == 0
    assert abs(no_text.float().mean() - 0.25) < 0.03
    assert torch.equal(no_tempo, no_text)  # tempo_dropout 0: only with everything
    assert no_melody[no_text].all() and abs(no_melody.float().mean() - 0.625) < 0.03
    assert (dropped.text[no_text] == 0).all() and (dropped.beat_offset[no_tempo] == 0).all()


def test_training_steps_lower_the_loss():
    torch.manual_seed(0)
    lm, frames = tiny(), 8
    lm.train()
    sequence = random_sequence("delay", frames, batch=4)
    cond = conditions(frames, batch=4)
    valid = get_pattern("delay").valid_mask(K, frames)
    optimizer = torch.optim.AdamW(lm.parameters(), lr=3e-3)
    losses = []
    for _ in range(10):
        loss = lm_loss(lm(sequence, cond), sequence, valid).total
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.2, losses


def test_config_checks():
    with pytest.raises(ValueError, match="pattern"):
        LMConfig(pattern="dleay")
    with pytest.raises(ValueError, match="multiple"):
        LMConfig(dim=30, num_heads=8)
    with pytest.raises(ValueError, match="positions"):
        LMConfig(positions="rope")


def test_alibi_runs_past_the_training_length_and_sinusoids_stop_at_max_steps():
    """ALiBi has no position table: a model of max_steps 64 still scores 64 steps, and its
    heads prefer near steps (the nearest key gets the largest bias)."""
    lm = tiny(positions="alibi")
    bias = lm._self_mask(10, 1)[0]  # [H, 1, 11]
    assert bias.shape == (4, 1, 11) and (bias[:, 0, -1] == 0).all()
    assert (bias[:, 0, :-1].diff(dim=-1) > 0).all()
    assert lm._self_mask(0, 3)[0, :, 0, 1:].isinf().all()  # no peeking ahead
    assert tiny(positions="sinusoidal").positions.shape == (64, 32)


def test_a_bfloat16_model_takes_fp32_conditions():
    lm, frames = tiny().to(torch.bfloat16), 4
    sequence = random_sequence("delay", frames)
    cond = conditions(frames)  # fp32 tensors
    full = lm(sequence, cond)
    state = lm.start(cond, sequence.shape[-1])
    first = lm.step(state, torch.full((2, K, 1), N))
    assert full.dtype == first.dtype == torch.bfloat16
    assert torch.allclose(first.float(), full[:, :, 0].float(), atol=0.05)
