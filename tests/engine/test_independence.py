"""Tests of the independence-promoting loss (engine/independence.py)."""

from __future__ import annotations

import math

import pytest
import torch

from engine.independence import (
    IndependenceConfig,
    delay_align,
    draw_rows,
    independence_loss,
    independence_weight,
    joint_and_shuffled_rows,
    median_squared_distance,
    mmd2_unbiased,
    squared_distances,
    standardize,
)

SAME_FRAME = IndependenceConfig(delay_aligned=False, rows=512)




def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _gaussian_streams(seed: int, dependent_lag: int | None = None) -> torch.Tensor:
    """`[4, 4, 128, 8]` independent Gaussian blocks; with a lag, block 1 copies block 0 + noise.

    Block 1 at frame t becomes block 0 at frame t + lag plus 0.1 noise (lag 0: the same frame).
    """
    g = _gen(seed)
    streams = torch.randn(4, 4, 128, 8, generator=g)  # [B, K, T, D]
    if dependent_lag is not None:
        frames = 128 - dependent_lag
        noise = 0.1 * torch.randn(4, frames, 8, generator=g)
        streams[:, 1, :frames] = streams[:, 0, dependent_lag:] + noise
    return streams


def _kernel(d2: torch.Tensor, bandwidths: tuple[float, ...]) -> torch.Tensor:
    return sum(torch.exp(-d2 / (2 * a)) for a in bandwidths)


# --- config and schedule ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "changes",
    [
        {"weight": -1.0},
        {"weight": math.nan},
        {"stream": "codes"},
        {"bandwidth_mode": "mean"},
        {"bandwidths": ()},
        {"median_scales": (1.0, 0.0)},
        {"rows": 1},
        {"rows": -5},
        {"every": 0},
        {"warmup_steps": -1},
    ],
)
def test_config_rejects_bad_values(changes: dict) -> None:
    with pytest.raises(ValueError, match="invalid independence config"):
        IndependenceConfig(**changes)


def test_config_turns_lists_into_tuples() -> None:
    config = IndependenceConfig(bandwidths=[1, 2], median_scales=[0.5])
    assert config.bandwidths == (1.0, 2.0) and config.median_scales == (0.5,)
    hash(config)


def test_weight_schedule() -> None:
    assert independence_weight(10, IndependenceConfig(weight=0.0)) == 0.0
    every = IndependenceConfig(weight=2.0, every=4)
    assert [independence_weight(s, every) for s in range(5)] == [2.0, 0.0, 0.0, 0.0, 2.0]
    ramp = IndependenceConfig(weight=10.0, warmup_steps=100)
    assert independence_weight(0, ramp) == 0.0
    assert independence_weight(25, ramp) == pytest.approx(2.5)
    assert independence_weight(100, ramp) == independence_weight(5000, ramp) == 10.0
    late = IndependenceConfig(weight=10.0, warmup_steps=100, start_step=1000)
    assert independence_weight(999, late) == independence_weight(1000, late) == 0.0
    assert independence_weight(1050, late) == pytest.approx(5.0)
    assert independence_weight(1100, late) == 10.0


# --- delay alignment and rows ------------------------------------------------------------------


def test_delay_align_matches_naive_loop() -> None:
    streams = torch.randn(2, 4, 9, 3)  # [B, K, T, D]
    aligned = delay_align(streams)
    assert aligned.shape == (2, 4, 6, 3)
    for b in range(2):
        for t in range(6):
            for k in range(4):
                # Row t holds what one delay step predicts: codebook k at frame t + K - 1 - k.
                assert torch.equal(aligned[b, k, t], streams[b, k, t + 3 - k])
    assert torch.equal(delay_align(streams[:, :1]), streams[:, :1])  # K = 1: nothing moves
    with pytest.raises(ValueError, match="T >= K"):
        delay_align(torch.randn(1, 4, 3, 2))


def test_shuffled_rows_keep_each_block_marginal_and_break_the_pairing() -> None:
    streams = torch.randn(3, 2, 100, 4)  # [B, K, T, D], all values distinct
    x, y = joint_and_shuffled_rows(streams, rows=0, generator=_gen(0))
    assert x.shape == y.shape == (300, 8)
    where = {}  # block k of a joint row -> that row's index
    for k in range(2):
        block = slice(4 * k, 4 * k + 4)
        assert sorted(map(tuple, x[:, block].tolist())) == sorted(map(tuple, y[:, block].tolist()))
        where[k] = {tuple(row): i for i, row in enumerate(x[:, block].tolist())}
    same_source = sum(
        where[0][tuple(row[:4])] == where[1][tuple(row[4:])] for row in y.tolist()
    )  # rows of y whose two blocks still come from one joint row: ~1 expected of 300
    assert same_source <= 6
    # Row t of batch item b is concat_k Z_k[b, t].
    assert torch.equal(x[100 + 7], torch.cat([streams[1, 0, 7], streams[1, 1, 7]]))


def test_rows_are_subsampled_without_replacement() -> None:
    streams = torch.randn(2, 3, 50, 2)
    x, y = joint_and_shuffled_rows(streams, rows=40, generator=_gen(1))
    assert x.shape == y.shape == (40, 6)
    all_rows = {tuple(r) for r in streams.permute(0, 2, 1, 3).reshape(100, 6).tolist()}
    kept = [tuple(r) for r in x.tolist()]
    assert len(set(kept)) == 40 and set(kept) <= all_rows
    draw = draw_rows(100, 40, 3, _gen(1))
    assert draw.keep is not None and draw.sources.shape == (40, 3)
    assert all(sorted(draw.sources[:, k].tolist()) == list(range(40)) for k in range(3))


def test_gradients_flow_through_joint_and_shuffled_rows() -> None:
    streams = torch.randn(2, 3, 10, 4, requires_grad=True)
    x, y = joint_and_shuffled_rows(streams, rows=0, generator=_gen(2))
    y.pow(2).sum().backward()
    assert torch.allclose(streams.grad, 2 * streams.detach())  # every value lands once in y
    streams.grad = None
    x, _ = joint_and_shuffled_rows(streams, rows=0, generator=_gen(2))
    x.sum().backward()
    assert torch.equal(streams.grad, torch.ones_like(streams))


def test_standardize_pools_statistics_and_survives_constant_features() -> None:
    x = torch.randn(64, 5) * 3 + 1
    x[:, 2] = 7.0  # a collapsed feature
    x.requires_grad_(True)
    y = x[torch.randperm(64)]
    xs, ys = standardize(x, y)
    pooled = torch.cat([xs, ys])
    assert torch.allclose(pooled.mean(0), torch.zeros(5), atol=1e-5)
    live = [0, 1, 3, 4]
    assert torch.allclose(pooled[:, live].std(0, unbiased=False), torch.ones(4), atol=1e-4)
    assert torch.equal(pooled[:, 2], torch.zeros(128))
    (xs * torch.randn(64, 5)).sum().backward()
    assert torch.isfinite(x.grad).all()


# --- distances and the estimator ---------------------------------------------------------------


@pytest.mark.parametrize("same", [True, False])
def test_squared_distances_value_and_gradient(same: bool) -> None:
    a = torch.randn(7, 4, dtype=torch.float64, requires_grad=True)
    b = a if same else torch.randn(5, 4, dtype=torch.float64, requires_grad=True)
    reference = (a[:, None] - b[None]).pow(2).sum(-1)
    assert torch.allclose(squared_distances(a, b), reference)
    inputs = (a,) if same else (a, b)
    assert torch.autograd.gradcheck(lambda *t: squared_distances(t[0], t[-1]), inputs)


def test_squared_distances_give_finite_gradients_on_identical_rows() -> None:
    rows = torch.randint(-3, 4, (20, 6)).float()  # integer values: distances exactly 0
    x = torch.cat([rows, rows]).requires_grad_(True)  # [40, 6], every row twice
    # The failure mode: a distance through a square root, then squared (what cdist(...) ** 2
    # amounts to). At distance 0 its backward is 0 · ∞ = NaN.
    through_sqrt = (x[:, None] - x[None]).pow(2).sum(-1).sqrt().pow(2)
    (grad_sqrt,) = torch.autograd.grad(torch.exp(-through_sqrt).sum(), x)
    assert not torch.isfinite(grad_sqrt).all()
    (grad,) = torch.autograd.grad(torch.exp(-squared_distances(x, x)).sum(), x)
    assert torch.isfinite(grad).all()
    exact = x.detach().double().requires_grad_(True)
    (reference,) = torch.autograd.grad(
        torch.exp(-(exact[:, None] - exact[None]).pow(2).sum(-1)).sum(), exact
    )
    assert torch.allclose(grad.double(), reference, atol=1e-5)


@pytest.mark.parametrize("bandwidths", [(0.5, 1.0, 2.0, 4.0, 8.0), (0.1, 1.0, 5.0, 10.0, 20.0)])
def test_mmd2_matches_the_textbook_formula(bandwidths: tuple[float, ...]) -> None:
    # The power-of-two chain (first case) and plain exps (second) must both be exact.
    x = torch.randn(30, 3, dtype=torch.float64, requires_grad=True)
    y = (torch.randn(25, 3, dtype=torch.float64) + 0.5).requires_grad_(True)
    k_xx = _kernel((x[:, None] - x[None]).pow(2).sum(-1), bandwidths)
    k_yy = _kernel((y[:, None] - y[None]).pow(2).sum(-1), bandwidths)
    k_xy = _kernel((x[:, None] - y[None]).pow(2).sum(-1), bandwidths)
    expected = (
        (k_xx.sum() - k_xx.diagonal().sum()) / (30 * 29)
        + (k_yy.sum() - k_yy.diagonal().sum()) / (25 * 24)
        - 2 * k_xy.mean()
    )
    got = mmd2_unbiased(x, y, bandwidths, clamp=False)
    assert got.item() == pytest.approx(expected.item(), rel=1e-10)
    assert torch.autograd.gradcheck(
        lambda a, b: mmd2_unbiased(a, b, bandwidths, clamp=False), (x, y)
    )


def test_unbiased_estimator_is_zero_in_expectation() -> None:
    # x and y from one distribution: the raw estimate scatters around 0 (often below it), while
    # keeping the diagonal terms (the biased V-statistic) sits clearly above 0.
    raw, biased = [], []
    for seed in range(200):
        g = _gen(seed)
        x, y = torch.randn(24, 3, generator=g), torch.randn(24, 3, generator=g)
        raw.append(mmd2_unbiased(x, y, (1.0, 4.0), clamp=False).item())
        k_xx = _kernel(squared_distances(x, x), (1.0, 4.0))
        k_yy = _kernel(squared_distances(y, y), (1.0, 4.0))
        biased.append(
            (
                k_xx.mean() + k_yy.mean() - 2 * _kernel(squared_distances(x, y), (1.0, 4.0)).mean()
            ).item()
        )
    raw_t, biased_t = torch.tensor(raw), torch.tensor(biased)
    standard_error = raw_t.std() / math.sqrt(len(raw))
    assert abs(raw_t.mean()) < 4 * standard_error
    assert (raw_t < 0).sum() > 50
    assert biased_t.mean() > 10 * standard_error
    assert mmd2_unbiased(torch.zeros(3, 2), torch.ones(3, 2), (1.0,)).item() > 0


# --- the loss ----------------------------------------------------------------------------------


def test_loss_is_the_composition_of_its_steps() -> None:
    streams = torch.randn(2, 3, 60, 4)
    config = IndependenceConfig(rows=100)  # delay-aligned, median bandwidths, standardised
    loss = independence_loss(streams, config, _gen(3), clamp=False)
    aligned = delay_align(streams)  # [2, 3, 58, 4]
    x, y = standardize(*joint_and_shuffled_rows(aligned, 100, _gen(3)))
    sources = draw_rows(116, 100, 3, _gen(3)).sources
    pooled = torch.cat([x, y])  # 200 rows < 256: the median sees every pair
    d2 = (pooled[:, None] - pooled[None]).pow(2).sum(-1)
    median = d2[~torch.eye(200, dtype=torch.bool)].median()
    scale = median_squared_distance(x, y)
    assert scale.item() == pytest.approx(median.item(), rel=1e-4)
    expected = mmd2_unbiased(x, y, config.median_scales, scale=scale, clamp=False, sources=sources)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5, abs=1e-8)


def test_loss_separates_independent_from_dependent_codebooks() -> None:
    # With y shuffled from x's own rows the raw estimate has a small null spread (measured
    # ~1.4e-4 for 512 rows of 32 features), so 1e-3 is a ~7-sigma bound for independent blocks;
    # block 1 = block 0 + 0.1 noise gives ~8e-3, and must beat every independent draw 20-fold.
    independent = [
        independence_loss(_gaussian_streams(s), SAME_FRAME, _gen(s), clamp=False).item()
        for s in range(6)
    ]
    dependent = [
        independence_loss(_gaussian_streams(s, 0), SAME_FRAME, _gen(s), clamp=False).item()
        for s in range(6)
    ]
    assert max(abs(v) for v in independent) < 1e-3
    assert min(dependent) > 20 * max(abs(v) for v in independent)
    assert min(dependent) > 3e-3


def test_unbiased_on_independent_blocks_even_with_shared_rows() -> None:
    # y is built from x's own rows; leaving out the cross pairs that share a block keeps the
    # raw estimate centred on 0 (without that it sat near -5e-3, below a real dependence).
    raw = torch.tensor(
        [
            independence_loss(_gaussian_streams(s), SAME_FRAME, _gen(s), clamp=False).item()
            for s in range(100, 116)
        ]
    )
    assert abs(raw.mean()) < 4 * raw.std() / math.sqrt(len(raw))


def test_delay_aligned_loss_sees_the_lagged_dependence_only() -> None:
    # Block 1 at t copies block 0 at t + 1: the pair one delay step predicts together.
    delay = IndependenceConfig(rows=512)
    lagged, plain = _gaussian_streams(0, dependent_lag=1), _gaussian_streams(0, dependent_lag=0)
    assert independence_loss(lagged, delay, _gen(0)).item() > 3e-3
    assert independence_loss(lagged, SAME_FRAME, _gen(0)).item() < 1e-3
    assert independence_loss(plain, delay, _gen(0)).item() < 1e-3


def test_loss_gradients_are_finite_and_reach_every_codebook() -> None:
    streams = _gaussian_streams(1, dependent_lag=1).requires_grad_(True)
    loss = independence_loss(streams, IndependenceConfig(rows=256), _gen(1))
    loss.backward()
    assert loss.item() > 0 and torch.isfinite(streams.grad).all()
    assert all(streams.grad[:, k].abs().sum() > 0 for k in range(4))
    # Quantized-like streams: few distinct rows, many exact duplicates, one constant feature.
    codebook = torch.randn(3, 8)
    codes = torch.randint(0, 3, (2, 4, 64), generator=_gen(5))
    quantized = codebook[codes].clone()  # [B, K, T, D]
    quantized[..., 0] = 1.0
    quantized.requires_grad_(True)
    loss = independence_loss(quantized, IndependenceConfig(rows=0), _gen(5))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(quantized.grad).all()


def test_standardised_loss_ignores_feature_scale_and_shift() -> None:
    streams = _gaussian_streams(2, 0)
    scale = torch.rand(1, 4, 1, 8) * 5 + 0.1
    shift = torch.randn(1, 4, 1, 8) * 3
    config = IndependenceConfig(rows=256, delay_aligned=False)
    reference = independence_loss(streams, config, _gen(2)).item()
    moved = independence_loss(streams * scale + shift, config, _gen(2)).item()
    assert moved == pytest.approx(reference, rel=1e-3)
    # Hence no gradient along a global rescaling: d loss / d c at c = 1 is ~0 (~1e-9). Without
    # the attached statistics (here: no standardisation; the median bandwidth is detached) the
    # loss could be lowered by rescaling the streams, and its gradient says so (~1e-2).
    c = torch.ones((), requires_grad=True)
    independence_loss(streams * c, config, _gen(2)).backward()
    assert abs(c.grad.item()) < 1e-4 * reference
    c_raw = torch.ones((), requires_grad=True)
    raw = IndependenceConfig(rows=256, delay_aligned=False, standardize=False)
    independence_loss(streams * c_raw, raw, _gen(2)).backward()
    assert abs(c_raw.grad.item()) > 0.1 * reference


def test_fixed_bandwidths_and_half_precision_inputs() -> None:
    config = IndependenceConfig(rows=128, bandwidth_mode="fixed", delay_aligned=False)
    streams = _gaussian_streams(3, 0)
    fixed = independence_loss(streams.half(), config, _gen(3))
    assert fixed.dtype == torch.float32 and torch.isfinite(fixed) and fixed.item() > 0
    with pytest.raises(ValueError, match="at least 2 rows"):
        independence_loss(torch.randn(1, 4, 4, 2), IndependenceConfig(), _gen(0))


def test_cross_term_leaves_out_exactly_the_pairs_that_share_a_block() -> None:
    streams = torch.randn(1, 3, 12, 2, dtype=torch.float64)  # [B, K, T, D]: 12 rows of 3 blocks
    draw = draw_rows(12, 0, 3, _gen(4))
    x, y = joint_and_shuffled_rows(streams, 0, _gen(4))
    k_xx = _kernel((x[:, None] - x[None]).pow(2).sum(-1), (2.0,))
    k_yy = _kernel((y[:, None] - y[None]).pow(2).sum(-1), (2.0,))
    k_xy = _kernel((x[:, None] - y[None]).pow(2).sum(-1), (2.0,))
    keep = torch.ones(12, 12, dtype=torch.bool)
    for j in range(12):
        for k in range(3):
            keep[draw.sources[j, k], j] = False  # x_i and y_j share block k when i = π_k(j)
    expected = (
        (k_xx.sum() - k_xx.diagonal().sum()) / 132
        + (k_yy.sum() - k_yy.diagonal().sum()) / 132
        - 2 * k_xy[keep].mean()
    )
    got = mmd2_unbiased(x, y, (2.0,), clamp=False, sources=draw.sources)
    assert got.item() == pytest.approx(expected.item(), rel=1e-10)
    rows = x.detach().requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda r: mmd2_unbiased(r, y, (2.0,), clamp=False, sources=draw.sources), (rows,)
    )
