"""The token loop: sample codes from the LM step by step, with guidance, and yield frames early.

A decoding pattern (engine/patterns.py) lays the codes [B, K, T] out as a sequence of steps
[B, K, S]; each step predicts a few (frame, codebook) positions in parallel. This module walks
the steps with the LM's KV cache (`lm.start` / `lm.step`), samples every position that is
still unknown, and yields each frame as soon as all of its codebooks are known, so that the
codec can turn it into audio while later frames are generated (delay: frame t after step
t + K - 1).

Three kinds of position appear in the sequence:

    invalid   no (frame, codebook) belongs there: the special token is fed.
    known     a code of the prefix (a continuation): forced, never sampled.
    free      sampled from the guided logits.

With a prefix, the leading run of steps that hold no free position is fed in one `lm.step`
call (prefill), and so is any later run (coarse-first has a second one).

Classifier-free guidance [MG]: the conditional rows and the unconditional (all conditions
dropped) rows run as one batch of 2B, and the logits mix as l_u + cfg * (l_c - l_u).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import Tensor

from engine.conditioning import Conditions
from engine.patterns import Pattern, get_pattern

logger = logging.getLogger(__name__)

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class SamplingParams:
    """How tokens are drawn from the LM's logits (MusicGen's defaults).

    Args:
        temperature: logits are divided by it; 0 means greedy (argmax).
        top_k: sample among the k most likely codes; 0 disables.
        top_p: sample among the most likely codes whose probabilities sum to p (nucleus);
            0 disables. Applied after top-k.
        cfg: classifier-free guidance scale; 1 runs the conditional rows only (no guidance).
        seed: seed of the sampling generator; the same seed gives the same codes.
    """

    temperature: float = 1.0
    top_k: int = 250
    top_p: float = 0.0
    cfg: float = 3.0
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.temperature >= 0.0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0 (0 disables it), got {self.top_k}")
        if not 0.0 <= self.top_p <= 1.0:
            raise ValueError(f"top_p must be in [0, 1] (0 disables it), got {self.top_p}")
        if not self.cfg >= 0.0:
            raise ValueError(f"cfg must be >= 0, got {self.cfg}")
        if not 0 <= self.seed < 2**63:
            raise ValueError(f"seed must be in [0, 2**63), got {self.seed}")


def sample(logits: Tensor, params: SamplingParams, generator: torch.Generator) -> Tensor:
    """Draw one code per row from logits with temperature, top-k and top-p.

    Args:
        logits: [..., N] unnormalised scores.
        params: temperature, top_k, top_p.
        generator: the seeded source of randomness.

    Returns:
        [...] int64 codes.
    """
    if params.temperature == 0.0:
        return logits.argmax(dim=-1)
    shape, n = logits.shape[:-1], logits.shape[-1]
    scores = logits.reshape(-1, n).float() / params.temperature  # [R, N]
    # Work on the candidates only (the top k, sorted): 4x less than masking all N codes.
    index = None  # [R, C] code of each candidate; None: all N codes in order
    if 0 < params.top_k < n:
        scores, index = torch.topk(scores, params.top_k, dim=-1)  # [R, k], descending
    if 0.0 < params.top_p < 1.0:
        if index is None:
            scores, index = torch.sort(scores, dim=-1, descending=True)  # [R, N]
        probs = scores.softmax(dim=-1)
        # Drop a code when the codes before it already reach p; the most likely always stays.
        drop = (probs.cumsum(dim=-1) - probs) >= params.top_p
        scores = scores.masked_fill(drop, float("-inf"))
    choice = torch.multinomial(scores.softmax(dim=-1), 1, generator=generator)  # [R, 1]
    codes = choice if index is None else index.gather(-1, choice)
    return codes.reshape(shape)


def guided_logits(logits: Tensor, batch: int, cfg: float) -> Tensor:
    """Mix the conditional rows [:B] and unconditional rows [B:] of [2B, K, N] logits.

    With cfg == 1 the batch holds the conditional rows only and is returned as is.
    """
    if logits.shape[0] == batch:
        return logits.float()
    cond, uncond = logits.float().split(batch, dim=0)  # [B, K, N] each
    return uncond + cfg * (cond - uncond)


def generate_frames(
    lm,
    conditions: Conditions,
    num_frames: int,
    pattern: Pattern | str,
    params: SamplingParams,
    prefix: Tensor | None = None,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
) -> Iterator[Tensor]:
    """Generate codes with the LM and yield each run of newly completed frames.

    Args:
        lm: a LanguageModel (`start(conditions, max_steps)`, `step(state, inputs)`,
            `config.num_codebooks`, `config.codebook_size`; special token = codebook_size).
        conditions: batch B, time-aligned over all P + num_frames frames (prefix included).
        num_frames: frames to generate after the prefix.
        pattern: a Pattern or its name.
        params: sampling parameters and seed.
        prefix: [B, K, P] codes that the output continues (a continuation), or None.
        progress: called as progress(done_steps, total_steps) after every step.
        cancel: when set (from any thread) the loop stops before its next step.

    Yields:
        [B, K, n] int64 codes of frames P.. in order, n >= 1 per item; num_frames in all
        unless cancelled.
    """
    if isinstance(pattern, str):
        pattern = get_pattern(pattern)
    batch = conditions.bpm.shape[0]
    k, special = lm.config.num_codebooks, lm.config.codebook_size
    known = 0 if prefix is None else prefix.shape[-1]
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    if prefix is not None and (prefix.dim() != 3 or prefix.shape[:2] != (batch, k)):
        raise ValueError(f"prefix must be [{batch}, {k}, P], got {tuple(prefix.shape)}")
    frames = known + num_frames
    steps = pattern.num_steps(k, frames)

    # Where each sequence position comes from: its frame, or -1 where the position is invalid.
    frame_index = torch.arange(frames).repeat(k, 1)[None]  # [1, K, T]
    frame_of = pattern.interleave(frame_index, -1)[0]  # [K, S]
    valid = pattern.valid_mask(k, frames)  # [K, S]
    free = valid & (frame_of >= known)  # [K, S] positions to sample
    codes = torch.full((batch, k, frames), special, dtype=torch.long)  # [B, K, T]
    if prefix is not None:
        codes[:, :, :known] = prefix
    # inputs[:, :, 0] is the start token and inputs[:, :, s + 1] the token chosen at step s.
    inputs = torch.full((batch, k, steps + 1), special, dtype=torch.long)  # [B, K, S + 1]
    inputs[:, :, 1:] = pattern.interleave(codes, special)
    inputs[:, :, 1:][:, ~valid] = special  # invalid positions feed the special token

    guided = params.cfg != 1.0
    rows = Conditions.cat([conditions, Conditions.null_like(conditions)]) if guided \
        else conditions
    generator = torch.Generator().manual_seed(params.seed)
    samples_at = free.any(dim=0).tolist()  # [S]: steps with a position to sample
    with torch.inference_mode():
        state = lm.start(rows, steps)
    fed, emitted = 0, known
    for step in range(steps):
        if cancel is not None and cancel.is_set():
            logger.info("generation cancelled after %d of %d steps", step, steps)
            return
        if samples_at[step]:
            sampled = free[:, step]  # [K]
            with torch.inference_mode():
                fresh = inputs[:, :, fed:step + 1]  # [B, K, n]: everything not yet consumed
                logits = lm.step(state, torch.cat([fresh, fresh]) if guided else fresh)
                tokens = sample(guided_logits(logits, batch, params.cfg), params, generator)
            fed = step + 1
            inputs[:, sampled, step + 1] = tokens[:, sampled]
            codes[:, sampled, frame_of[sampled, step]] = tokens[:, sampled]
        if progress is not None:
            progress(step + 1, steps)
        complete = min(pattern.frames_complete_after(step, k, frames), frames)
        if complete > emitted:
            yield codes[:, :, emitted:complete].clone()
            emitted = complete
    if emitted < frames:  # a pattern whose completion count lags at the last step
        yield codes[:, :, emitted:].clone()


def generate_codes(
    lm,
    conditions: Conditions,
    num_frames: int,
    pattern: Pattern | str,
    params: SamplingParams,
    prefix: Tensor | None = None,
) -> Tensor:
    """All frames of `generate_frames` at once: [B, K, num_frames] int64."""
    return torch.cat(list(generate_frames(lm, conditions, num_frames, pattern, params, prefix)),
                     dim=-1)
