"""The token loop: sampling, guidance, prefixes, frame timing and cancellation."""

import threading
from types import SimpleNamespace

import pytest
import torch

from engine.conditioning import Conditions
from engine.generate import SamplingParams, generate_codes, generate_frames, guided_logits, sample
from engine.patterns import PATTERNS, get_pattern
from tests.tiny_engine import FixedTextEncoder, K, N, tiny_lm


def conditions(frames: int, batch: int = 1, bpm: float = 120.0) -> Conditions:
    text, mask = FixedTextEncoder().encode(["a small test prompt"] * batch)
    melody = torch.zeros(batch, 12, frames)
    melody[:, 3, ::2] = 1.0  # a melody on every other frame
    return Conditions(text=text, text_mask=mask, melody=melody,
                      bpm=torch.full((batch,), bpm), beat_offset=torch.zeros(batch))


# --- sampling -------------------------------------------------------------------------------

def test_top_k_1_is_argmax_whatever_the_seed():
    logits = torch.randn(3, K, N, generator=torch.Generator().manual_seed(1)) * 3
    for seed in range(5):
        drawn = sample(logits, SamplingParams(top_k=1, seed=seed),
                       torch.Generator().manual_seed(seed))
        assert torch.equal(drawn, logits.argmax(-1))


def test_temperature_0_and_a_tiny_nucleus_are_argmax():
    logits = torch.randn(2, K, N, generator=torch.Generator().manual_seed(2))
    greedy = sample(logits, SamplingParams(temperature=0.0), torch.Generator())
    nucleus = sample(logits, SamplingParams(top_k=0, top_p=1e-6), torch.Generator())
    assert torch.equal(greedy, logits.argmax(-1)) and torch.equal(nucleus, logits.argmax(-1))


def test_top_k_and_top_p_draw_only_inside_their_sets():
    probs = torch.tensor([0.4, 0.3, 0.15, 0.1, 0.05])
    logits = probs.log().expand(2000, 5)
    generator = torch.Generator().manual_seed(0)
    top2 = sample(logits, SamplingParams(top_k=2), generator)
    assert set(top2.unique().tolist()) == {0, 1}
    # p = 0.8: codes 0, 1 reach 0.7 < 0.8, so code 2 is needed too; code 3 never.
    nucleus = sample(logits, SamplingParams(top_k=0, top_p=0.8), generator)
    assert set(nucleus.unique().tolist()) == {0, 1, 2}
    free = sample(logits, SamplingParams(top_k=0), generator)
    assert set(free.unique().tolist()) == {0, 1, 2, 3, 4}
    share = (free == 0).float().mean().item()
    assert abs(share - 0.4) < 0.05


def test_guidance_mixes_conditional_and_unconditional_rows():
    cond, uncond = torch.randn(2, K, N), torch.randn(2, K, N)
    mixed = guided_logits(torch.cat([cond, uncond]), batch=2, cfg=3.0)
    assert torch.allclose(mixed, uncond + 3.0 * (cond - uncond))
    assert torch.equal(guided_logits(cond, batch=2, cfg=1.0), cond)


@pytest.mark.parametrize("bad", [dict(temperature=-1.0), dict(top_k=-1), dict(top_p=1.5),
                                 dict(cfg=-0.5), dict(seed=-3)])
def test_bad_sampling_params_are_refused(bad):
    with pytest.raises(ValueError):
        SamplingParams(**bad)


# --- the loop against a naive reference -----------------------------------------------------

@pytest.mark.parametrize("pattern", PATTERNS)
def test_greedy_loop_matches_a_naive_loop_over_the_full_forward(pattern):
    """KV-cached steps, guidance and special tokens give what forward() on the prefix gives."""
    lm, frames = tiny_lm(pattern), 6
    cond = conditions(frames)
    params = SamplingParams(top_k=1, cfg=2.5)
    codes = generate_codes(lm, cond, frames, pattern, params)  # [1, K, T]

    patt = get_pattern(pattern)
    steps, valid = patt.num_steps(K, frames), patt.valid_mask(K, frames)
    sequence = torch.full((1, K, steps), N, dtype=torch.long)
    null = Conditions.null_like(cond)
    with torch.inference_mode():
        for step in range(steps):
            l_c = lm.forward(sequence, cond)[:, :, step].float()  # [1, K, N]
            l_u = lm.forward(sequence, null)[:, :, step].float()
            best = (l_u + 2.5 * (l_c - l_u)).argmax(-1)  # [1, K]
            sequence[:, valid[:, step], step] = best[:, valid[:, step]]
    assert torch.equal(codes, patt.revert(sequence, frames))


class RecordingLM:
    """An LM double that records what it is fed; its logits favour code (position % N)."""

    def __init__(self) -> None:
        self.config = SimpleNamespace(num_codebooks=K, codebook_size=N)
        self.fed: list[torch.Tensor] = []
        self.rows = None

    def start(self, conditions, max_steps):
        self.rows, self.max_steps = conditions.bpm.shape[0], max_steps
        return {"position": 0}

    def step(self, state, inputs):
        assert inputs.shape[0] == self.rows and inputs.dtype == torch.long
        self.fed.append(inputs[:1].clone())
        state["position"] += inputs.shape[-1]
        assert state["position"] <= self.max_steps
        logits = torch.zeros(self.rows, K, N)
        logits[:, :, state["position"] % N] = 10.0
        return logits


@pytest.mark.parametrize("pattern", PATTERNS)
def test_special_tokens_at_invalid_positions_and_a_forced_prefix(pattern):
    lm, patt = RecordingLM(), get_pattern(pattern)
    prefix = torch.randint(0, N, (1, K, 3), generator=torch.Generator().manual_seed(0))
    new = list(generate_frames(lm, conditions(8), 5, pattern, SamplingParams(top_k=1, cfg=3.0),
                               prefix=prefix))
    codes = torch.cat([prefix, *new], dim=-1)  # [1, K, 8]
    assert sum(c.shape[-1] for c in new) == 5
    fed = torch.cat(lm.fed, dim=-1)  # [1, K, S]: the start token, then every step but the last
    expected = patt.interleave(codes, N)  # special token at invalid positions
    assert fed.shape[-1] == patt.num_steps(K, 8)
    assert torch.equal(fed[:, :, 0], torch.full((1, K), N))
    assert torch.equal(fed[:, :, 1:], expected[:, :, :-1])
    assert lm.fed[0].shape[-1] > 1  # the prefix went in as one prefill call
    assert lm.rows == 2  # conditional and unconditional rows in one batch


def test_delay_yields_frame_t_after_step_t_plus_k_minus_1():
    lm, done = tiny_lm("delay"), []
    arrivals = []  # (steps done when a chunk arrived, frames in it)
    frames = generate_frames(lm, conditions(5), 5, "delay", SamplingParams(seed=3),
                             progress=lambda step, total: done.append((step, total)))
    for chunk in frames:
        arrivals.append((done[-1][0], chunk.shape[-1]))
    assert done[-1] == (5 + K - 1, 5 + K - 1)
    # frame t is complete once steps 0..t+K-1 are done, i.e. after t + K steps
    assert arrivals == [(t + K, 1) for t in range(5)]


def test_same_seed_same_codes_other_seed_other_codes():
    lm = tiny_lm("delay")
    cond = conditions(20)
    first = generate_codes(lm, cond, 20, "delay", SamplingParams(seed=11))
    again = generate_codes(lm, cond, 20, "delay", SamplingParams(seed=11))
    other = generate_codes(lm, cond, 20, "delay", SamplingParams(seed=12))
    assert torch.equal(first, again) and not torch.equal(first, other)
    assert first.shape == (1, K, 20) and first.min() >= 0 and first.max() < N


def test_a_batch_generates_rows_of_its_own():
    cond = Conditions.cat([conditions(6), conditions(6, bpm=70.0)])
    codes = generate_codes(tiny_lm("parallel"), cond, 6, "parallel", SamplingParams(seed=0))
    assert codes.shape == (2, K, 6)


def test_cancel_from_another_thread_stops_within_one_step():
    lm, cancel = tiny_lm("delay"), threading.Event()
    calls = []
    real_step = lm.step

    def counting_step(state, inputs):
        calls.append(cancel.is_set())
        return real_step(state, inputs)

    lm.step = counting_step

    def progress(done, total):
        if done == 5:  # another thread cancels; this step waits until it has
            canceller = threading.Thread(target=cancel.set)
            canceller.start()
            canceller.join()

    frames = list(generate_frames(lm, conditions(30), 30, "delay", SamplingParams(),
                                  progress=progress, cancel=cancel))
    assert len(calls) == 5 and not any(calls)  # no step ran once cancel was set
    assert sum(f.shape[-1] for f in frames) == 5 - K + 1  # frames complete by then
