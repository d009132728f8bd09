"""The independence-promoting loss: MMD² between the joint codebook streams and their shuffle.

Implements Lemercier, Rouard, Copet, Adi, Défossez, *An Independence-promoting Loss for Music
Generation with Language Models*, ICML 2024 (arXiv 2406.02315), [MMD] in METHOD.md §2. If the K
codebook streams of an RVQ were independent, rows `concat_k Z_k` would follow the product of their
K marginals, a sample of which is cheap: permute each block of the rows independently. The loss is
the unbiased MMD² between joint and shuffled rows, one loss over all codebooks jointly. Streams are
`[B, K, T, D]` floats; which stream (residual, quantized, stage input) is the trainer's choice.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, NamedTuple

import torch
import torch.distributed as dist
from torch import Tensor
from torch.autograd.function import once_differentiable

# Floor on a feature's standard deviation: a constant feature (a collapsed codebook) standardises
# to 0 instead of dividing by 0, and its gradient stays finite.
_STD_FLOOR = 1e-5
_MEDIAN_ROWS = 128  # rows of each sample that estimate the median distance
_STREAMS = ("residual", "quantized", "stage_input")


def _positive(values: tuple[float, ...]) -> bool:
    """True for a non-empty tuple of finite positive numbers."""
    return len(values) > 0 and all(0 < v < math.inf for v in values)


@dataclass(frozen=True)
class IndependenceConfig:
    """How the independence loss is computed and scheduled ([MMD] §2; METHOD.md §2).

    Args:
        weight: multiplier of the loss in the codec objective; 0 switches it off.
        stream: which per-codebook vector the trainer feeds in (read by the trainer only).
        delay_aligned: pair the codes the delay pattern predicts together (see `delay_align`).
        bandwidth_mode: "median" scales `median_scales` by the median pairwise squared distance;
            "fixed" uses `bandwidths` as they are.
        bandwidths: fixed kernel bandwidths a in `sum_a exp(-d² / (2a))`.
        median_scales: multipliers of the median squared distance in median mode.
        rows: rows subsampled per call (the kernel matrix is rows × rows); 0 keeps all rows.
        every: apply the loss on training steps divisible by `every`.
        warmup_steps: linear ramp of the weight from 0 over that many steps.
        start_step: the loss is off before this step (the ramp starts here): a codec can
            learn to reconstruct first, and runs that differ only in the weight share their
            first `start_step` steps exactly.
        standardize: standardise each of the K·D features over the pooled rows.
    """

    weight: float = 0.0
    stream: Literal["residual", "quantized", "stage_input"] = "residual"
    delay_aligned: bool = True
    bandwidth_mode: Literal["median", "fixed"] = "median"
    bandwidths: tuple[float, ...] = (0.1, 1.0, 5.0, 10.0, 20.0, 50.0)
    median_scales: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0, 4.0)
    rows: int = 1024
    every: int = 1
    warmup_steps: int = 0
    start_step: int = 0
    standardize: bool = True

    def __post_init__(self) -> None:
        for name in ("bandwidths", "median_scales"):  # lists from YAML become hashable tuples
            object.__setattr__(self, name, tuple(float(v) for v in getattr(self, name)))
        rules = {
            "weight must be finite and >= 0": 0 <= self.weight < math.inf,
            "stream must be residual, quantized or stage_input": self.stream in _STREAMS,
            "bandwidth_mode must be median or fixed": self.bandwidth_mode in ("median", "fixed"),
            "bandwidths must be positive numbers, at least one": _positive(self.bandwidths),
            "median_scales must be positive numbers, at least one": _positive(self.median_scales),
            "rows must be 0 (all rows) or >= 2": self.rows == 0 or self.rows >= 2,
            "every must be >= 1": self.every >= 1,
            "warmup_steps must be >= 0": self.warmup_steps >= 0,
            "start_step must be >= 0": self.start_step >= 0,
        }
        broken = [message for message, ok in rules.items() if not ok]
        if broken:
            raise ValueError(f"invalid independence config: {'; '.join(broken)} (got {self})")


class JointRows(NamedTuple):
    """Rows of the joint distribution and of the product of its marginals, both `[M, K*D]`."""

    joint: Tensor
    shuffled: Tensor


def delay_align(streams: Tensor) -> Tensor:
    """Shift codebook k by k frames so that each row holds the codes one delay step predicts.

    The delay pattern predicts, at step s, codebook k at frame s − k. Shifting Z_k(t) ← Z_k(t − k)
    and cropping the frames where some codebook is undefined leaves T − K + 1 frames; output frame
    t pairs (Z_0[t+K−1], Z_1[t+K−2], …, Z_{K−1}[t]). With K = 3 and T = 5 (frames 0..4):

        codebook 0:  0 1 2 3 4            output t=0: (Z_0[2], Z_1[1], Z_2[0])
        codebook 1:    0 1 2 3 4          output t=1: (Z_0[3], Z_1[2], Z_2[1])
        codebook 2:      0 1 2 3 4        output t=2: (Z_0[4], Z_1[3], Z_2[2])
                         ^ ^ ^  columns where all three are defined

    Args:
        streams: `[B, K, T, D]`, T >= K.

    Returns:
        `[B, K, T − K + 1, D]`.
    """
    _, k_books, frames, _ = streams.shape
    if frames < k_books:
        raise ValueError(f"delay_align needs T >= K frames, got T={frames}, K={k_books}")
    kept = frames - k_books + 1
    shifted = [streams[:, k, k_books - 1 - k :][:, :kept] for k in range(k_books)]
    return torch.stack(shifted, dim=1)  # [B, K, T-K+1, D]


class RowDraw(NamedTuple):
    """The random choices of one loss call: kept rows and the source of each shuffled block."""

    keep: Tensor | None  # [M] indices into the B·T rows; None keeps all rows in order
    sources: Tensor  # [M, K]: shuffled row i takes block k from kept row sources[i, k]


def draw_rows(total: int, rows: int, k: int, generator: torch.Generator | None = None) -> RowDraw:
    """Draw the row subsample (when `total > rows > 0`) and a permutation π_k per codebook (k).

    Returns:
        RowDraw, `sources[:, k] = π_k`, on the generator's device (CPU without one).
    """
    device = generator.device if generator is not None else torch.device("cpu")
    keep = None
    if 0 < rows < total:
        keep = torch.randperm(total, generator=generator, device=device)[:rows]  # [M]
    m = total if keep is None else rows
    if m < 2:
        raise ValueError(f"the independence loss needs at least 2 rows, got {m}")
    perms = [torch.randperm(m, generator=generator, device=device) for _ in range(k)]
    return RowDraw(keep, torch.stack(perms, dim=1))  # sources: [M, K]


def _rows_from_draw(streams: Tensor, draw: RowDraw) -> JointRows:
    """Joint rows `concat_k Z_k[b, t]` and their per-block shuffle, as chosen by `draw`."""
    b, k_books, frames, dim = streams.shape
    x = streams.permute(0, 2, 1, 3).reshape(b * frames, k_books * dim)  # [B*T, K*D]
    if draw.keep is not None:
        x = x[draw.keep.to(x.device)]  # [M, K*D]
    books = torch.arange(k_books, device=x.device)  # [K]
    sources = draw.sources.to(x.device)  # [M, K]
    y = x.view(-1, k_books, dim)[sources, books]  # [M, K, D]: y[i, k] = x[sources[i, k], k]
    return JointRows(x, y.reshape(x.shape))


def joint_and_shuffled_rows(
    streams: Tensor, rows: int, generator: torch.Generator | None = None
) -> JointRows:
    """Rows of the joint streams and a product-of-marginals sample built by per-block shuffles.

    Args:
        streams: `[B, K, T, D]`.
        rows: keep this many random rows (without replacement) when there are more; 0 keeps all.
        generator: random source for the subsample and the K permutations (see `draw_rows`).

    Returns:
        JointRows, `[M, K*D]` each: `joint` row i is `concat_k Z_k[b, t]`; `shuffled` row i has
        block k of joint row π_k(i), one independent permutation π_k per codebook, so each block
        of `shuffled` holds the same multiset of rows as in `joint`. Both keep the graph.
    """
    b, k_books, frames, _ = streams.shape
    return _rows_from_draw(streams, draw_rows(b * frames, rows, k_books, generator))


def standardize(x: Tensor, y: Tensor) -> JointRows:
    """Standardise each feature with mean and std of the pooled rows of `x` and `y`.

    Args:
        x: `[M, F]` joint rows. y: `[M', F]` shuffled rows.

    Returns:
        JointRows with both standardised by the same statistics.
    """
    # Statistics NOT detached: the loss is then exactly invariant to a per-feature scale and shift
    # of the streams, so its gradient cannot shrink features (shrinking all makes every kernel 1
    # and the MMD 0: a collapse-like way to "win"); it can only change the dependence between
    # codebooks. std = sqrt(clamped var) keeps the gradient finite for a constant feature.
    centered = torch.cat([x, y], dim=0)  # [M+M', F]
    centered = centered - centered.mean(dim=0)  # centre first: var over dim 0 is slow in torch
    std = centered.pow(2).mean(dim=0).clamp_min(_STD_FLOOR**2).sqrt()  # [F]
    scaled = centered / std  # [M+M', F]
    return JointRows(scaled[: x.shape[0]], scaled[x.shape[0] :])


class _SquaredDistances(torch.autograd.Function):
    """‖a_i − b_j‖² by the expanded form, with its exact gradient 2(a_i − b_j) written out."""

    @staticmethod
    def forward(ctx, a: Tensor, b: Tensor) -> Tensor:
        ctx.save_for_backward(a, b)
        a_sq = a.pow(2).sum(dim=1, keepdim=True)  # [Ma, 1]
        b_sq = b.pow(2).sum(dim=1).unsqueeze(0)  # [1, Mb]
        # Rounding can make the expanded form slightly negative for (nearly) identical rows.
        return torch.addmm(b_sq, a, b.T, alpha=-2.0).add_(a_sq).clamp_min_(0.0)  # [Ma, Mb]

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, Tensor | None]:
        # d/da_i sum_j g_ij ‖a_i − b_j‖² = 2 (rowsum(g)_i a_i − (g b)_i); symmetric for b. No mask
        # for the clamp: it only undoes rounding, and the true gradient there is ~0 anyway.
        a, b = ctx.saved_tensors
        grad_a = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_a = 2.0 * (grad.sum(dim=1, keepdim=True) * a - grad @ b)  # [Ma, F]
        if ctx.needs_input_grad[1]:
            grad_b = 2.0 * (grad.sum(dim=0).unsqueeze(1) * b - grad.T @ a)  # [Mb, F]
        return grad_a, grad_b


def squared_distances(a: Tensor, b: Tensor) -> Tensor:
    """Pairwise squared Euclidean distances as ‖a‖² + ‖b‖² − 2 a·b, clamped at 0.

    Never `torch.cdist(a, b) ** 2`: a distance taken through a square root has an infinite
    derivative at 0, so identical rows (common in quantized streams) can give 0 · ∞ = NaN
    gradients. Here the backward is the closed form 2(a_i − b_j), finite everywhere.

    Args:
        a: `[Ma, F]`. b: `[Mb, F]`.

    Returns:
        `[Ma, Mb]`.
    """
    return _SquaredDistances.apply(a, b)


def _power_of_two(ratio: float) -> int | None:
    """n when `ratio` is 2**n for n in 0..4, else None."""
    n = round(math.log2(ratio))
    return n if 0 <= n <= 4 and abs(ratio - 2.0**n) <= 1e-9 * ratio else None


class _KernelMean(torch.autograd.Function):
    """Mean over entries of `sum_a exp(-d² / (2a))`, a = base × scale; flat indices `skip` out.

    Elementwise passes over M² entries cost as much as the matrix products, so bandwidths go
    wide to narrow, squaring the last kernel when their ratio is a power of two (the default
    median scales) instead of another exp, and the backward is one product with a saved sum.
    """

    @staticmethod
    def forward(ctx, d2: Tensor, base: Tensor, scales: tuple[float, ...], skip: Tensor) -> Tensor:
        total = d2.new_zeros(())
        weighted: Tensor | None = None  # sum_a e_a / scale_a, [Ma, Mb]
        kernel, previous = d2, None
        for scale in sorted(scales, reverse=True):
            steps = None if previous is None else _power_of_two(previous / scale)
            if steps is None:
                kernel = d2.mul(-0.5 / (base * scale)).exp_()  # [Ma, Mb]
            else:
                for _ in range(steps):
                    kernel = kernel.square_()
            total += kernel.sum() - kernel.view(-1)[skip].sum()
            if weighted is None:
                weighted = kernel / scale
            else:
                weighted.add_(kernel, alpha=1.0 / scale)
            previous = scale
        ctx.save_for_backward(weighted, base, skip)
        ctx.count = d2.numel() - skip.numel()
        return total / ctx.count

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None, None]:
        weighted, base, skip = ctx.saved_tensors
        # d e_a / d d² = -e_a / (2a); not in place, so a retained graph can run backward again.
        grad_d2 = weighted * (grad * (-0.5 / base) / ctx.count)  # [Ma, Mb]
        grad_d2.view(-1)[skip] = 0.0
        return grad_d2, None, None, None


def mmd2_unbiased(
    x: Tensor,
    y: Tensor,
    bandwidths: Sequence[float] | Tensor,
    *,
    scale: Tensor | float = 1.0,
    clamp: bool = True,
    sources: Tensor | None = None,
) -> Tensor:
    """Unbiased MMD² between the rows of `x` and `y` with a sum of Gaussian kernels.

    Args:
        x: `[M, F]`. y: `[N, F]`; M, N >= 2.
        bandwidths: the a of `sum_a exp(-‖u − v‖² / (2a))`, positive, each times `scale`.
        scale: common factor of the bandwidths (a detached tensor, e.g. a median, or a number).
        clamp: clamp at 0 (the loss); False returns the raw estimate, whose mean over draws of
            x and y from one distribution is 0 and which is often slightly negative.
        sources: `[N, K]` when y was shuffled from x's rows (`RowDraw.sources`): the cross
            pairs that share a block are left out, which keeps the estimate unbiased.

    Returns:
        A scalar tensor.
    """
    m, n = x.shape[0], y.shape[0]
    if m < 2 or n < 2:
        raise ValueError(f"mmd2_unbiased needs >= 2 rows each, got {m} and {n}")
    scales = tuple(float(a) for a in bandwidths)
    base = torch.as_tensor(scale, dtype=x.dtype, device=x.device)
    # Pairs of a row with itself leave the within-sample means (which divide by M(M − 1)).
    diag_x = torch.arange(m, device=x.device) * (m + 1)  # [M] flat diagonal indices
    diag_y = torch.arange(n, device=x.device) * (n + 1)  # [N]
    # When y was shuffled from x's own rows, pair (x_i, y_j) shares block k if i = π_k(j): such
    # pairs are closer than independent ones and would bias the cross mean up (MMD² down) by
    # O(K/M), hiding weak dependence under the clamp. Leave those K·M pairs out.
    shared = torch.empty(0, dtype=torch.long, device=x.device)
    if sources is not None:
        columns = torch.arange(n, device=x.device).unsqueeze(1)  # [N, 1]
        shared = torch.unique(sources.to(x.device) * n + columns)  # [<= N*K] flat (i, j)
    k_xx = _KernelMean.apply(squared_distances(x, x), base, scales, diag_x)
    k_yy = _KernelMean.apply(squared_distances(y, y), base, scales, diag_y)
    k_xy = _KernelMean.apply(squared_distances(x, y), base, scales, shared)
    mmd2 = k_xx + k_yy - 2.0 * k_xy
    return mmd2.clamp_min(0.0) if clamp else mmd2


def median_squared_distance(x: Tensor, y: Tensor, max_rows: int = _MEDIAN_ROWS) -> Tensor:
    """Median of the pairwise squared distances of the pooled rows of x and y, without gradient.

    Estimated on at most `max_rows` evenly spaced rows of each (~65k pairs: ~1% error on
    standardised rows, whose distances concentrate; 40 ms cheaper than all 4M pairs). A median
    of 0 (over half the pairs identical, e.g. collapsed codes) falls back to the mean, then to 1.

    Returns:
        A detached scalar tensor.
    """
    with torch.no_grad():
        sub_x = x[:: max(1, x.shape[0] // max_rows)][:max_rows]  # [m', F]
        sub_y = y[:: max(1, y.shape[0] // max_rows)][:max_rows]  # [n', F]
        pooled = torch.cat([sub_x, sub_y])  # [P, F]
        d2 = squared_distances(pooled, pooled).flatten()  # [P*P]
        p = pooled.shape[0]
        off = d2[1:].view(p - 1, p + 1)[:, :p].flatten()  # [P*(P-1)]: the diagonal dropped
        median = off.median()
        median = torch.where(median > 0, median, off.mean())
        return torch.where(median > 0, median, torch.ones_like(median))


def gather_rows(streams: Tensor) -> Tensor:
    """The streams of every data-parallel worker, concatenated in rank order: `[W·B, K, T, D]`.

    Under torch.distributed with W > 1 workers, each worker's `[B, K, T, D]` is all-gathered by
    `torch.distributed.nn.functional.all_gather`, which carries gradients: its backward sums,
    over the workers, the gradients they computed for this worker's rows. Every worker computes
    the same loss on the same gathered rows (its generator is in the same state), so its own
    rows receive W times the gradient of that loss, and DDP's mean over the workers gives back
    exactly the single-process gradient on the global batch. Otherwise `streams` unchanged.
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return streams
    from torch.distributed.nn.functional import all_gather

    with warnings.catch_warnings():
        # Deprecated for the private _functional_collectives; still the public differentiable
        # gather, and its backward runs on gloo (an all-to-all instead of a reduce-scatter).
        warnings.simplefilter("ignore", FutureWarning)
        # The group named at each call: the default argument is the group of the first
        # init_process_group, stale once a process leaves a group and joins another.
        return torch.cat(all_gather(streams, group=dist.group.WORLD), dim=0)


def independence_loss(
    streams: Tensor,
    config: IndependenceConfig,
    generator: torch.Generator | None = None,
    *,
    clamp: bool = True,
) -> Tensor:
    """The independence-promoting loss of [MMD]: MMD² between joint and shuffled rows.

    Steps: delay alignment (if configured) → merge batch and time into rows, subsample →
    per-block shuffles → standardise → bandwidths (median or fixed) → unbiased MMD², clamped at 0.
    Computed in float32 whatever the input dtype.

    Args:
        streams: `[B, K, T, D]` per-codebook vectors; gradients flow back to them.
        config: loss settings; `weight` is NOT applied here (see `independence_weight`).
        generator: random source for subsampling and permutations.
        clamp: clamp at 0 as the paper does; False gives the raw, unbiased estimate (metrics).

    Returns:
        The unweighted scalar loss.
    """
    streams = streams.float()
    if config.delay_aligned:
        streams = delay_align(streams)  # [B, K, T-K+1, D]
    b, k_books, frames, _ = streams.shape
    draw = draw_rows(b * frames, config.rows, k_books, generator)
    x, y = _rows_from_draw(streams, draw)  # [M, K*D] each
    if config.standardize:
        x, y = standardize(x, y)
    if config.bandwidth_mode == "median":
        scale, bandwidths = median_squared_distance(x, y), config.median_scales
    else:
        scale, bandwidths = 1.0, config.bandwidths
    return mmd2_unbiased(x, y, bandwidths, scale=scale, clamp=clamp, sources=draw.sources)


def independence_weight(step: int, config: IndependenceConfig) -> float:
    """Weight of the loss at a step: 0 when off or off-schedule, ramped during warm-up.

    Not scaled up by `every`: a loss applied every n steps acts n times less often.

    Args:
        step: the 0-based training step.
        config: supplies weight, every, start_step and warmup_steps.

    Returns:
        The multiplier for `independence_loss` at this step.
    """
    if config.weight == 0.0 or step < config.start_step or step % config.every != 0:
        return 0.0
    if config.warmup_steps > 0:
        return config.weight * min(1.0, (step - config.start_step) / config.warmup_steps)
    return config.weight
