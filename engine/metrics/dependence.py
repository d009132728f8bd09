"""How dependent the K code streams of an RVQ are, and how much of each codebook they use.

METHOD.md §3: pairwise mutual information between integer code streams (plug-in estimate with a
bias correction, same-frame or delay-aligned), code usage beside it (a codebook that collapses to
few codes "wins" on MI while wrecking reconstruction), and the held-out independence loss.

Codes are integer arrays or tensors `[B, K, T]` (or `[K, T]`) with values in `[0, N)`.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from engine.independence import IndependenceConfig, independence_loss

logger = logging.getLogger(__name__)

Correction = Literal["shuffle", "miller_madow", "none"]


def _as_codes(codes: np.ndarray | torch.Tensor, num_classes: int) -> np.ndarray:
    """Codes as an int64 array `[B, K, T]`, checked to lie in `[0, num_classes)`."""
    if isinstance(codes, torch.Tensor):
        codes = codes.detach().cpu().numpy()
    array = np.asarray(codes)
    if array.ndim == 2:
        array = array[None]  # [1, K, T]
    if array.ndim != 3:
        raise ValueError(f"codes must be [B, K, T] or [K, T], got shape {array.shape}")
    if not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"codes must be integers, got dtype {array.dtype}")
    if array.size and (array.min() < 0 or array.max() >= num_classes):
        raise ValueError(
            f"codes must lie in [0, {num_classes}), got [{array.min()}, {array.max()}]"
        )
    return array.astype(np.int64, copy=False)


def entropy_bits(counts: np.ndarray) -> float:
    """Plug-in entropy in bits of the histogram `counts` (any shape; zero bins ignored)."""
    counts = np.asarray(counts, dtype=np.float64).ravel()
    total = counts.sum()
    if total <= 0:
        return 0.0
    p = counts[counts > 0] / total
    return float(-(p * np.log2(p)).sum())


def _joint_counts(a: np.ndarray, b: np.ndarray, n: int) -> np.ndarray:
    """Joint histogram of two streams with values in `[0, n)`, flattened to `[n * n]`."""
    return np.bincount(a * n + b, minlength=n * n)  # one pass: fast for 1M samples, N = 1024


def mutual_information(
    a: np.ndarray,
    b: np.ndarray,
    num_classes: int,
    *,
    correction: Correction = "shuffle",
    shuffles: int = 5,
    seed: int = 0,
) -> float:
    """Mutual information in bits between two integer streams, with a bias correction.

    The plug-in estimate `H(a) + H(b) − H(a, b)` from histograms is biased upward by roughly
    `(N − 1)² / (2 n ln 2)` bits for independent streams: large when N² is not small against n.
    - "shuffle" subtracts the mean plug-in MI of `shuffles` random permutations of b (same
      marginals, no dependence): the bias measured on the data itself. Exact near independence
      (the regime we care about); it over-corrects strong dependence when N² is not ≪ n, since
      a concentrated joint histogram has less bias than the shuffled one.
    - "miller_madow" adds `(m − 1) / (2 n ln 2)` to each entropy, m its number of occupied bins;
      good when n is large against the occupied bins, too weak when N² ≫ n.
    - "none" returns the plug-in value.
    The corrected value is NOT clamped at 0: for independent streams it scatters around 0, and a
    negative value shows the estimator's noise floor (clamping would bias means over pairs
    upward and hide that floor).

    Args:
        a: 1-D integers in `[0, num_classes)`. b: the same length.
        num_classes: N, the codebook size.
        correction: bias correction, see above.
        shuffles: permutations averaged by the "shuffle" correction.
        seed: seed of those permutations.

    Returns:
        The estimate in bits.
    """
    a = np.asarray(a, dtype=np.int64).ravel()
    b = np.asarray(b, dtype=np.int64).ravel()
    if a.shape != b.shape or a.size == 0:
        raise ValueError(f"need two non-empty streams of one length, got {a.size} and {b.size}")
    if correction not in ("shuffle", "miller_madow", "none"):
        raise ValueError(f"correction must be shuffle, miller_madow or none, got {correction!r}")
    if min(a.min(), b.min()) < 0 or max(a.max(), b.max()) >= num_classes:
        raise ValueError(f"values must lie in [0, {num_classes})")
    count_a = np.bincount(a, minlength=num_classes)
    count_b = np.bincount(b, minlength=num_classes)
    h_a, h_b = entropy_bits(count_a), entropy_bits(count_b)
    joint = _joint_counts(a, b, num_classes)
    plugin = h_a + h_b - entropy_bits(joint)
    if correction == "none":
        return plugin
    if correction == "miller_madow":
        # H_MM = H + (m - 1) / (2 n ln 2) per entropy; the joint's term enters with a minus.
        m_a, m_b, m_ab = (int(np.count_nonzero(c)) for c in (count_a, count_b, joint))
        return plugin + (m_a + m_b - m_ab - 1) / (2.0 * a.size * math.log(2.0))
    if shuffles < 1:
        raise ValueError(f"the shuffle correction needs shuffles >= 1, got {shuffles}")
    # Permuting b keeps both marginals (so H(a), H(b) are reused) and removes any dependence.
    rng = np.random.default_rng(seed)
    baseline = [
        h_a + h_b - entropy_bits(_joint_counts(a, rng.permutation(b), num_classes))
        for _ in range(shuffles)
    ]
    return plugin - float(np.mean(baseline))


@dataclass(frozen=True)
class PairwiseMI:
    """Mutual information between every pair of codebooks.

    Args:
        bits: `[K, K]` MI in bits; the diagonal holds the marginal entropies H_k (plug-in).
        normalised: `[K, K]` I / sqrt(H_k H_l) off the diagonal (0 when an entropy is 0), 1 on it.
        mean_bits: mean of `bits` over the pairs k < l.
        mean_normalised: mean of `normalised` over the pairs k < l.
        delay_aligned: whether pairs follow the delay pattern (see
            `pairwise_mutual_information`) or the same frame.
    """

    bits: np.ndarray
    normalised: np.ndarray
    mean_bits: float
    mean_normalised: float
    delay_aligned: bool


def pairwise_mutual_information(
    codes: np.ndarray | torch.Tensor,
    num_classes: int,
    *,
    delay_aligned: bool,
    correction: Correction = "shuffle",
    shuffles: int = 5,
    seed: int = 0,
) -> PairwiseMI:
    """Mutual information between codebooks k < l over all batch items and frames.

    Same-frame pairs (Z_k[t], Z_l[t]). Delay-aligned pairs are what one step of the delay pattern
    predicts together: codebook k runs l − k frames ahead of codebook l, so Z_l[t] is paired with
    Z_k[t + (l − k)]; the last l − k frames of Z_l and the first of Z_k are cropped per batch item,
    so no pair crosses two items.

    Args:
        codes: `[B, K, T]` or `[K, T]` integers in `[0, num_classes)`, K >= 2.
        num_classes: N, the codebook size.
        delay_aligned: pair by the delay pattern (True) or by frame (False).
        correction, shuffles, seed: as in `mutual_information` (pair k, l uses seed + its index).

    Returns:
        PairwiseMI.
    """
    array = _as_codes(codes, num_classes)
    _, k_books, frames = array.shape
    if k_books < 2:
        raise ValueError(f"pairwise MI needs at least 2 codebooks, got {k_books}")
    entropies = [
        entropy_bits(np.bincount(array[:, k].ravel(), minlength=num_classes))
        for k in range(k_books)
    ]
    bits = np.diag(np.asarray(entropies, dtype=np.float64))  # [K, K]
    normalised = np.eye(k_books)  # [K, K]
    pair_index = 0
    for k in range(k_books):
        for l in range(k + 1, k_books):  # noqa: E741 (k, l are the paper's codebook indices)
            lag = l - k if delay_aligned else 0
            if frames - lag < 1:
                raise ValueError(f"delay-aligned pair ({k}, {l}) needs T > {lag}, got T={frames}")
            a = array[:, k, lag:]  # [B, T-lag]: Z_k[t + lag]
            b = array[:, l, : frames - lag]  # [B, T-lag]: Z_l[t]
            mi = mutual_information(
                a.ravel(),
                b.ravel(),
                num_classes,
                correction=correction,
                shuffles=shuffles,
                seed=seed + pair_index,
            )
            scale = math.sqrt(entropies[k] * entropies[l])
            bits[k, l] = bits[l, k] = mi
            normalised[k, l] = normalised[l, k] = mi / scale if scale > 0 else 0.0
            pair_index += 1
    upper = np.triu_indices(k_books, k=1)
    return PairwiseMI(
        bits=bits,
        normalised=normalised,
        mean_bits=float(bits[upper].mean()),
        mean_normalised=float(normalised[upper].mean()),
        delay_aligned=delay_aligned,
    )


@dataclass(frozen=True)
class CodeUsage:
    """How much of each codebook the codes use; one entry per codebook.

    Args:
        entropy_bits: plug-in entropy of the code histogram (log2 N when uniform).
        perplexity: 2 ** entropy, the effective number of codes (1 for a collapsed codebook).
        used_fraction: share of the N codes that occur at least once.
    """

    entropy_bits: tuple[float, ...]
    perplexity: tuple[float, ...]
    used_fraction: tuple[float, ...]


def code_usage(codes: np.ndarray | torch.Tensor, num_classes: int) -> CodeUsage:
    """Entropy, perplexity and used fraction of each codebook over all batch items and frames.

    Args:
        codes: `[B, K, T]` or `[K, T]` integers in `[0, num_classes)`.
        num_classes: N, the codebook size.

    Returns:
        CodeUsage.
    """
    array = _as_codes(codes, num_classes)
    counts = [np.bincount(row.ravel(), minlength=num_classes) for row in array.transpose(1, 0, 2)]
    entropies = tuple(entropy_bits(c) for c in counts)
    return CodeUsage(
        entropy_bits=entropies,
        perplexity=tuple(2.0**h for h in entropies),
        used_fraction=tuple(np.count_nonzero(c) / num_classes for c in counts),
    )


def heldout_mmd(
    streams: torch.Tensor, config: IndependenceConfig, *, repeats: int = 4, seed: int = 0
) -> float:
    """The independence loss on held-out streams, without gradients, averaged over draws.

    Each repeat draws a fresh row subsample and fresh permutations from one generator seeded
    with `seed`, so the value is reproducible and its sampling noise shrinks with `repeats`.
    Draws are averaged before the loss's clamp at 0: the raw estimate is unbiased, while a mean
    of clamped draws would sit above 0 for independent streams (the mean may be slightly < 0).

    Args:
        streams: `[B, K, T, D]` per-codebook vectors, as fed to the loss in training.
        config: the loss settings (weight and schedule are ignored).
        repeats: number of draws averaged.
        seed: seed of the draws.

    Returns:
        Mean raw MMD² over the draws.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    generator = torch.Generator(device=streams.device).manual_seed(seed)
    with torch.no_grad():
        draws = [
            float(independence_loss(streams, config, generator, clamp=False))
            for _ in range(repeats)
        ]
    logger.debug("held-out MMD² draws: %s", draws)
    return float(np.mean(draws))
