"""Tests of the dependence metrics (engine/metrics/dependence.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from engine.independence import IndependenceConfig, independence_loss
from engine.metrics.dependence import (
    PairwiseMI,
    code_usage,
    entropy_bits,
    heldout_mmd,
    mutual_information,
    pairwise_mutual_information,
)


def _noisy_copy(a: np.ndarray, p: float, n_classes: int, rng: np.random.Generator) -> np.ndarray:
    """b = a with probability p, else a uniform random code."""
    return np.where(rng.random(a.size) < p, a, rng.integers(0, n_classes, a.size))


def _noisy_copy_mi(p: float, n: int) -> float:
    """Exact I(a; b) in bits for uniform a and b = _noisy_copy(a, p, n).

    p(a, b) = (p [a = b] + (1 − p) / n) / n and both marginals are uniform, so the n diagonal
    cells contribute (p + (1 − p)/n) log2(n p + 1 − p) and the n(n − 1) others (1 − p)(n − 1)/n
    log2(1 − p).
    """
    diagonal = (p + (1 - p) / n) * math.log2(n * p + 1 - p)
    off_diagonal = (1 - p) * (n - 1) / n * math.log2(1 - p) if p < 1 else 0.0
    return diagonal + off_diagonal


def test_entropy_bits() -> None:
    assert entropy_bits(np.array([5, 5, 5, 5])) == pytest.approx(2.0)
    assert entropy_bits(np.array([0, 9, 0])) == 0.0
    assert entropy_bits(np.zeros(4)) == 0.0
    assert entropy_bits(np.array([[1, 1], [2, 0]])) == pytest.approx(1.5)


def test_exact_mi_formula_edges() -> None:
    assert _noisy_copy_mi(0.0, 16) == pytest.approx(0.0)
    assert _noisy_copy_mi(1.0, 16) == pytest.approx(4.0)


@pytest.mark.parametrize("correction", ["shuffle", "miller_madow", "none"])
@pytest.mark.parametrize("p", [0.3, 0.8])
def test_mi_recovers_a_known_value(correction: str, p: float) -> None:
    rng = np.random.default_rng(0)
    a = rng.integers(0, 16, 200_000)
    b = _noisy_copy(a, p, 16, rng)
    estimate = mutual_information(a, b, 16, correction=correction)
    # Well sampled (256 cells, 200k samples): plug-in bias ~ 225 / (2 n ln 2) = 8e-4 bits, and
    # sampling std ~ 0.004 bits (log-ratio spread ~1.5 bits / sqrt(n)): 0.015 is ~4 sigma.
    assert estimate == pytest.approx(_noisy_copy_mi(p, 16), abs=0.015)


def test_mi_of_independent_streams_is_zero_after_correction() -> None:
    rng = np.random.default_rng(1)
    # Undersampled: 65,536 cells for 20,000 samples. The plug-in estimate is badly biased up.
    a, b = rng.integers(0, 256, 20_000), rng.integers(0, 256, 20_000)
    plugin = mutual_information(a, b, 256, correction="none")
    shuffled = mutual_information(a, b, 256, correction="shuffle")
    assert plugin > 1.0
    assert abs(shuffled) < 0.03
    # Miller–Madow is fine when the cells are well sampled, not here.
    small_a, small_b = rng.integers(0, 16, 5_000), rng.integers(0, 16, 5_000)
    assert mutual_information(small_a, small_b, 16, correction="none") > 0.015
    assert abs(mutual_information(small_a, small_b, 16, correction="miller_madow")) < 0.012
    assert abs(mutual_information(small_a, small_b, 16, correction="shuffle")) < 0.012


def test_mi_is_reported_raw_and_reproducibly() -> None:
    rng = np.random.default_rng(2)
    values = []
    for _ in range(20):
        a, b = rng.integers(0, 8, 3_000), rng.integers(0, 8, 3_000)
        values.append(mutual_information(a, b, 8, seed=3))
        assert values[-1] == mutual_information(a, b, 8, seed=3)
    assert min(values) < 0 < max(values)  # not clamped: the noise floor stays visible


def test_mi_validates_inputs() -> None:
    with pytest.raises(ValueError, match="lie in"):
        mutual_information(np.array([0, 4]), np.array([1, 1]), 4)
    with pytest.raises(ValueError, match="one length"):
        mutual_information(np.array([0, 1]), np.array([1]), 4)
    with pytest.raises(ValueError, match="correction"):
        mutual_information(np.array([0, 1]), np.array([1, 0]), 4, correction="jackknife")


def test_mi_handles_a_million_samples_of_1024_classes() -> None:
    rng = np.random.default_rng(4)
    a = rng.integers(0, 1024, 1_000_000)
    b = _noisy_copy(a, 0.5, 1024, rng)
    # One bincount per histogram: well under a second here; a Python loop would take minutes.
    estimate = mutual_information(a, b, 1024, correction="none")
    # About as many cells as samples: the plug-in estimate is biased up, the exact MI is ~4.0.
    assert _noisy_copy_mi(0.5, 1024) < estimate < _noisy_copy_mi(0.5, 1024) + 1.0


def _planted_codes(lag: int, rng: np.random.Generator) -> np.ndarray:
    """`[3, 3, 2000]` uniform codes of 32 classes, with Z_2[t] = Z_0[t + lag] in every item."""
    codes = rng.integers(0, 32, (3, 3, 2000))  # [B, K, T]
    codes[:, 2, : 2000 - lag] = codes[:, 0, lag:]
    return codes


def test_delay_aligned_mi_finds_a_lagged_dependence_that_same_frame_mi_misses() -> None:
    # The delay pattern predicts Z_2[t] with Z_0[t + 2]: a copy at lag 2 is fully dependent there.
    codes = _planted_codes(2, np.random.default_rng(5))
    delay = pairwise_mutual_information(codes, 32, delay_aligned=True)
    frame = pairwise_mutual_information(codes, 32, delay_aligned=False)
    # A copy carries H = 5 bits; the shuffle baseline (the bias of independent streams, ~0.12
    # bits for 1,024 cells and 6,000 pairs) over-corrects a full dependence a little.
    assert 4.8 < delay.bits[0, 2] <= 5.0
    assert delay.normalised[0, 2] == pytest.approx(1.0, abs=0.03)
    # Independent pairs: corrected MI scatters with std ~0.006 bits here, so 0.035 is ~6 sigma.
    assert abs(frame.bits[0, 2]) < 0.035
    assert abs(delay.bits[0, 1]) < 0.035 and abs(delay.bits[1, 2]) < 0.035
    assert delay.delay_aligned and not frame.delay_aligned


def test_same_frame_mi_finds_a_same_frame_dependence_that_delay_aligned_mi_misses() -> None:
    codes = _planted_codes(0, np.random.default_rng(6))
    delay = pairwise_mutual_information(codes, 32, delay_aligned=True)
    frame = pairwise_mutual_information(codes, 32, delay_aligned=False)
    assert 4.8 < frame.bits[0, 2] <= 5.0
    assert abs(delay.bits[0, 2]) < 0.035


def test_pairwise_pairs_match_a_naive_loop_within_each_item() -> None:
    rng = np.random.default_rng(7)
    codes = rng.integers(0, 6, (2, 3, 40))  # [B, K, T]
    result = pairwise_mutual_information(codes, 6, delay_aligned=True, correction="none")
    for k in range(3):
        for l in range(k + 1, 3):  # noqa: E741
            a, b = [], []
            for item in range(2):
                for t in range(40 - (l - k)):  # never across items
                    a.append(codes[item, k, t + (l - k)])
                    b.append(codes[item, l, t])
            naive = mutual_information(np.array(a), np.array(b), 6, correction="none")
            assert result.bits[k, l] == pytest.approx(naive, abs=1e-12)


def test_pairwise_result_structure() -> None:
    rng = np.random.default_rng(8)
    codes = torch.from_numpy(rng.integers(0, 16, (4, 4, 500)))
    codes[:, 3] = 0  # a collapsed codebook
    result = pairwise_mutual_information(codes, 16, delay_aligned=False)
    assert isinstance(result, PairwiseMI)
    assert result.bits.shape == result.normalised.shape == (4, 4)
    assert np.allclose(result.bits, result.bits.T) and np.allclose(np.diag(result.normalised), 1)
    assert np.diag(result.bits)[:3] == pytest.approx([4.0] * 3, abs=0.01)
    assert result.bits[3, 3] == 0.0 and np.all(result.normalised[3, :3] == 0.0)
    upper = np.triu_indices(4, k=1)
    assert result.mean_bits == pytest.approx(result.bits[upper].mean())
    assert result.mean_normalised == pytest.approx(result.normalised[upper].mean())
    with pytest.raises(ValueError, match="2 codebooks"):
        pairwise_mutual_information(codes[:, :1], 16, delay_aligned=False)


def test_code_usage_uniform_and_collapsed() -> None:
    uniform = np.tile(np.arange(64), 10)  # every code 10 times
    collapsed = np.full(640, 5)
    usage = code_usage(np.stack([uniform, collapsed]), 64)  # [K, T]
    assert usage.entropy_bits == pytest.approx((6.0, 0.0))
    assert usage.perplexity == pytest.approx((64.0, 1.0))
    assert usage.used_fraction == pytest.approx((1.0, 1 / 64))
    random_codes = torch.randint(0, 64, (8, 1, 4000))  # [B, K, T]
    usage = code_usage(random_codes, 64)
    assert usage.entropy_bits[0] == pytest.approx(6.0, abs=0.02)
    assert usage.perplexity[0] == pytest.approx(64.0, rel=0.02)
    with pytest.raises(ValueError, match="integers"):
        code_usage(np.zeros((2, 5)), 4)
    with pytest.raises(ValueError, match="lie in"):
        code_usage(np.full((2, 5), 4), 4)


def test_heldout_mmd_is_the_loss_without_gradients_averaged_over_draws() -> None:
    streams = torch.randn(2, 3, 40, 4, requires_grad=True)
    config = IndependenceConfig(rows=64)
    value = heldout_mmd(streams, config, repeats=3, seed=9)
    assert value == heldout_mmd(streams, config, repeats=3, seed=9)
    generator = torch.Generator().manual_seed(9)
    draws = [independence_loss(streams, config, generator, clamp=False).item() for _ in range(3)]
    assert value == pytest.approx(float(np.mean(draws)), rel=1e-5, abs=1e-9)
    assert streams.grad is None
