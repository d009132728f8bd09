"""Patterns against a naive loop over their definitions, and by round trip."""

import pytest
import torch

from engine.patterns import PATTERNS, get_pattern

SPECIAL = -7
SIZES = [(1, 1), (1, 5), (2, 3), (3, 4), (4, 1), (4, 7), (8, 10)]


def naive_steps(name: str, K: int, T: int) -> list[list[tuple[int, int]]]:
    """The pattern as a list of steps, each a list of (frame, codebook), written from [MG] §4."""
    if name == "parallel":
        return [[(s, k) for k in range(K)] for s in range(T)]
    if name == "delay":
        return [[(s - k, k) for k in range(K) if 0 <= s - k < T] for s in range(T + K - 1)]
    if name == "flatten":
        return [[(t, k)] for t in range(T) for k in range(K)]
    if name == "coarse_first":
        return [[(t, 0)] for t in range(T)] + [[(t, k) for k in range(1, K)] for t in range(T)]
    raise AssertionError(name)


def naive_interleave(name: str, codes: torch.Tensor) -> torch.Tensor:
    B, K, T = codes.shape
    steps = naive_steps(name, K, T)
    out = torch.full((B, K, len(steps)), SPECIAL, dtype=codes.dtype)
    for s, positions in enumerate(steps):
        for t, k in positions:
            out[:, k, s] = codes[:, k, t]
    return out


@pytest.mark.parametrize("name", PATTERNS)
@pytest.mark.parametrize("K,T", SIZES)
def test_interleave_matches_the_naive_loop_and_reverts(name, K, T):
    pattern = get_pattern(name)
    codes = torch.randint(0, 50, (2, K, T))
    sequence = pattern.interleave(codes, SPECIAL)
    assert sequence.shape == (2, K, pattern.num_steps(K, T))
    assert torch.equal(sequence, naive_interleave(name, codes))
    assert torch.equal(pattern.valid_mask(K, T), sequence[0] != SPECIAL)
    assert torch.equal(pattern.revert(sequence, T), codes)


@pytest.mark.parametrize("name", PATTERNS)
@pytest.mark.parametrize("K,T", SIZES)
def test_frames_complete_after_counts_whole_frames(name, K, T):
    pattern = get_pattern(name)
    steps = naive_steps(name, K, T)
    done: set[tuple[int, int]] = set()
    for s, positions in enumerate(steps):
        done.update(positions)
        complete = 0
        while complete < T and all((complete, k) in done for k in range(K)):
            complete += 1
        assert pattern.frames_complete_after(s, K, T) == complete, (s, name)


@pytest.mark.parametrize("name", PATTERNS)
def test_each_step_is_aligned_with_the_frame_it_predicts(name):
    K, T = 4, 6
    pattern = get_pattern(name)
    times = pattern.frame_of_step(K, T)
    frames = pattern.frame_map(K, T)
    assert times.shape == (pattern.num_steps(K, T),)
    for s in range(len(times)):
        held = frames[:, s][frames[:, s] >= 0].unique()
        if name == "delay":  # a delay step spans K frames: it is aligned with the newest
            assert times[s] == min(s, T - 1)
        else:
            assert held.tolist() == [int(times[s])]


def test_delay_example_from_the_docstring():
    codes = torch.tensor([[[1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 11, 12]]])
    assert get_pattern("delay").interleave(codes, 0).tolist() == [[
        [1, 2, 3, 4, 0, 0], [0, 5, 6, 7, 8, 0], [0, 0, 9, 10, 11, 12]]]


def test_unknown_pattern_names_the_choices():
    with pytest.raises(ValueError, match="parallel, delay, flatten, coarse_first"):
        get_pattern("dleay")


def test_revert_refuses_a_sequence_of_the_wrong_length():
    with pytest.raises(ValueError, match="steps"):
        get_pattern("delay").revert(torch.zeros(1, 4, 9, dtype=torch.long), 7)
