"""Decoding patterns of [MG]: how K parallel code streams are laid out as LM steps.

A pattern is a sequence of steps; each step holds a set of (frame t, codebook k) positions that
the LM predicts together, given every earlier step. Here a pattern is a pure index map: row k,
step s of the sequence [B, K, S] holds the code of frame `frame_map(K, T)[k, s]`, or the special
token where that map is -1 (no position of codebook k belongs to step s).

Worked examples with K = 3 codebooks, T = 4 frames; `a0` is codebook 0 at frame 0, `.` the
special token.

parallel (S = T): all codebooks of a frame in one step; fast, models the product of marginals::

    k0: a0 a1 a2 a3
    k1: b0 b1 b2 b3
    k2: c0 c1 c2 c3

delay (S = T + K - 1): codebook k is late by k steps, so the codes of one frame are predicted
across K steps and codebook k sees codebooks < k of its frame (MusicGen's default)::

    k0: a0 a1 a2 a3 .  .
    k1: .  b0 b1 b2 b3 .
    k2: .  .  c0 c1 c2 c3

flatten (S = K * T): one position per step, the exact joint model, K times slower::

    k0: a0 .  .  a1 .  .  a2 .  .  a3 .  .
    k1: .  b0 .  .  b1 .  .  b2 .  .  b3 .
    k2: .  .  c0 .  .  c1 .  .  c2 .  .  c3

coarse_first (S = 2T): all of codebook 0 first, then codebooks 1..K-1 in parallel::

    k0: a0 a1 a2 a3 .  .  .  .
    k1: .  .  .  .  b0 b1 b2 b3
    k2: .  .  .  .  c0 c1 c2 c3

Step s is aligned in time with frame `frame_of_step(K, T)[s]` (parallel/delay: s, clamped to
the last frame; flatten: s // K; coarse_first: s % T); the time-aligned conditions (melody,
beat phase) of that frame are added to the LM's input at step s.
"""

from __future__ import annotations

from functools import lru_cache

import torch
from torch import Tensor

PATTERNS = ("parallel", "delay", "flatten", "coarse_first")


class Pattern:
    """One decoding pattern: an index map between codes [B, K, T] and a sequence [B, K, S]."""

    name: str = ""

    def num_steps(self, K: int, T: int) -> int:
        """S, the number of steps for K codebooks and T frames."""
        raise NotImplementedError

    def _frame_map(self, K: int, T: int) -> Tensor:
        """[K, S] int64: the frame held at (k, s), or -1 where the special token goes."""
        raise NotImplementedError

    def _frame_of_step(self, K: int, T: int) -> Tensor:
        """[S] int64: the frame each step is aligned with in time."""
        raise NotImplementedError

    def frames_complete_after(self, step: int, K: int, T: int) -> int:
        """How many leading frames have all K codes once steps 0..step are done."""
        raise NotImplementedError

    def frame_map(self, K: int, T: int) -> Tensor:
        """[K, S] int64 frame of each sequence position, -1 where invalid (cached; do not edit)."""
        return _cached(self.name, "map", K, T)

    def valid_mask(self, K: int, T: int) -> Tensor:
        """[K, S] bool: True where the sequence holds a code (not the special token)."""
        return self.frame_map(K, T) >= 0

    def frame_of_step(self, K: int, T: int) -> Tensor:
        """[S] int64: the frame whose time-aligned conditions step s sees."""
        return _cached(self.name, "time", K, T)

    def interleave(self, codes: Tensor, special: int) -> Tensor:
        """Lay codes out as steps.

        Args:
            codes: [B, K, T] integer tensor.
            special: the value written where no code belongs.

        Returns:
            [B, K, S] sequence of the same dtype.
        """
        B, K, T = codes.shape
        frames = self.frame_map(K, T).to(codes.device)  # [K, S]
        index = frames.clamp(min=0).expand(B, K, -1)  # [B, K, S]
        gathered = codes.gather(2, index)  # [B, K, S]
        return gathered.masked_fill(frames < 0, special)

    def revert(self, sequence: Tensor, T: int) -> Tensor:
        """Read the codes back out of a sequence (the inverse of `interleave`).

        Args:
            sequence: [B, K, S] with S = num_steps(K, T).
            T: number of frames.

        Returns:
            [B, K, T] codes.
        """
        B, K, S = sequence.shape
        if self.num_steps(K, T) != S:
            raise ValueError(f"{self.name}: a sequence of {S} steps does not hold {T} frames "
                             f"of {K} codebooks ({self.num_steps(K, T)} steps)")
        steps = _cached(self.name, "inverse", K, T).to(sequence.device)  # [K, T]
        return sequence.gather(2, steps.expand(B, K, T))  # [B, K, T]


class Parallel(Pattern):
    name = "parallel"

    def num_steps(self, K: int, T: int) -> int:
        return T

    def _frame_map(self, K: int, T: int) -> Tensor:
        return torch.arange(T).expand(K, T).clone()

    def _frame_of_step(self, K: int, T: int) -> Tensor:
        return torch.arange(T)

    def frames_complete_after(self, step: int, K: int, T: int) -> int:
        return max(0, min(step + 1, T))


class Delay(Pattern):
    name = "delay"

    def num_steps(self, K: int, T: int) -> int:
        return T + K - 1 if T > 0 else 0

    def _frame_map(self, K: int, T: int) -> Tensor:
        S = self.num_steps(K, T)
        frames = torch.arange(S)[None] - torch.arange(K)[:, None]  # [K, S]: t = s - k
        return frames.masked_fill((frames < 0) | (frames >= T), -1)

    def _frame_of_step(self, K: int, T: int) -> Tensor:
        return torch.arange(self.num_steps(K, T)).clamp(max=max(T - 1, 0))

    def frames_complete_after(self, step: int, K: int, T: int) -> int:
        return max(0, min(step - K + 2, T))


class Flatten(Pattern):
    name = "flatten"

    def num_steps(self, K: int, T: int) -> int:
        return K * T

    def _frame_map(self, K: int, T: int) -> Tensor:
        steps = torch.arange(K * T)
        frames = (steps // K).expand(K, -1)  # [K, S]
        own = (steps % K)[None] == torch.arange(K)[:, None]  # [K, S]: codebook s % K only
        return frames.masked_fill(~own, -1)

    def _frame_of_step(self, K: int, T: int) -> Tensor:
        return torch.arange(K * T) // K

    def frames_complete_after(self, step: int, K: int, T: int) -> int:
        return max(0, min((step + 1) // K, T))


class CoarseFirst(Pattern):
    name = "coarse_first"

    def num_steps(self, K: int, T: int) -> int:
        return 2 * T

    def _frame_map(self, K: int, T: int) -> Tensor:
        frames = torch.arange(2 * T).remainder(max(T, 1)).expand(K, -1).clone()  # [K, S]
        first = torch.arange(2 * T) < T  # [S]
        coarse = (torch.arange(K) == 0)[:, None]  # [K, 1]
        return frames.masked_fill(coarse != first[None], -1)

    def _frame_of_step(self, K: int, T: int) -> Tensor:
        return torch.arange(2 * T).remainder(max(T, 1))

    def frames_complete_after(self, step: int, K: int, T: int) -> int:
        if K == 1:
            return max(0, min(step + 1, T))
        return max(0, min(step - T + 1, T))


_PATTERNS: dict[str, Pattern] = {p.name: p for p in (Parallel(), Delay(), Flatten(),
                                                     CoarseFirst())}


def get_pattern(name: str) -> Pattern:
    """The pattern called `name` (one of PATTERNS)."""
    try:
        return _PATTERNS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown pattern {name!r}; choose one of "
                         f"{', '.join(PATTERNS)}") from None


@lru_cache(maxsize=256)
def _cached(name: str, what: str, K: int, T: int) -> Tensor:
    """Index maps are pure functions of (pattern, K, T): build each once."""
    pattern = _PATTERNS[name]
    if what == "map":
        return pattern._frame_map(K, T)
    if what == "time":
        return pattern._frame_of_step(K, T)
    # inverse: the step that holds each (k, t); every (k, t) appears exactly once.
    frames = pattern.frame_map(K, T)  # [K, S]
    inverse = torch.zeros(K, T, dtype=torch.long)
    rows, steps = (frames >= 0).nonzero(as_tuple=True)
    inverse[rows, frames[rows, steps]] = steps
    return inverse
