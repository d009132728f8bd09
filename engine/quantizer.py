"""Residual vector quantization with EMA codebooks (SoundStream / EnCodec).

Each of K stages quantizes what the previous stages left: r_0 = x, q_k = nearest codeword of
r_{k-1} in codebook k, r_k = r_{k-1} - q_k. Codebooks are buffers updated by exponential moving
averages (never by gradients), initialised by k-means on the first training batch, and dead
codes (EMA usage below a threshold) are re-seeded from the current batch.

Note on `dead_code_threshold`: the EMA count of a code converges to the number of vectors it
receives per step, so with M = B * T vectors per training step and N codes, uniform usage gives
M / N per code. The threshold must stay well below M / N or healthy codes are re-seeded every step.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class QuantizerConfig:
    """Residual vector quantizer settings.

    Args:
        num_codebooks: stages K.
        codebook_size: codewords N per stage.
        dim: vector size D (the codec's latent_dim).
        ema_decay: decay of the EMA codebook statistics.
        kmeans_init: initialise each codebook by k-means on the first training batch.
        kmeans_iters: Lloyd iterations of that k-means.
        dead_code_threshold: codes whose EMA count falls below are re-seeded (0 disables).
        epsilon: Laplace smoothing of the EMA counts.
    """

    num_codebooks: int = 4
    codebook_size: int = 1024
    dim: int = 64
    ema_decay: float = 0.99
    kmeans_init: bool = True
    kmeans_iters: int = 10
    dead_code_threshold: float = 2.0
    epsilon: float = 1e-5

    def __post_init__(self) -> None:
        for name in ("num_codebooks", "codebook_size", "dim"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        if self.kmeans_iters < 0 or self.dead_code_threshold < 0 or self.epsilon <= 0:
            raise ValueError("kmeans_iters and dead_code_threshold must be >= 0, epsilon > 0")


class QuantizerOutput(NamedTuple):
    """What one forward pass of the quantizer gives."""

    quantized: Tensor  # [B, D, T] sum of codewords, straight-through gradient to the input
    codes: Tensor  # [B, K, T] int64
    commitment: Tensor  # scalar: mean over stages of mean((r_{k-1} - sg(q_k))^2)
    residuals: Tensor  # [B, K, T, D] r_k = r_{k-1} - sg(q_k)
    stage_quantized: Tensor  # [B, K, T, D] q_k with a straight-through gradient
    stage_inputs: Tensor  # [B, K, T, D] r_{k-1}


@dataclass(frozen=True)
class QuantizerStats:
    """Codebook usage in the latest forward pass, per stage (all tensors [K], no grad)."""

    perplexity: Tensor  # exp(entropy) of the code histogram; N means uniform use
    used_codes: Tensor  # distinct codes in the batch
    dead_replaced: Tensor  # codes re-seeded this step (0 in eval mode)
    kmeans_initialised: bool  # this step ran the k-means initialisation

    def as_log(self, prefix: str = "vq") -> dict[str, float]:
        """Flat, loggable scalars, e.g. {"vq/perplexity/0": 812.3, "vq/dead_replaced/0": 3}."""
        out: dict[str, float] = {}
        for name in ("perplexity", "used_codes", "dead_replaced"):
            for k, value in enumerate(getattr(self, name).tolist()):
                out[f"{prefix}/{name}/{k}"] = float(value)
        return out


def squared_distances(x: Tensor, embedding: Tensor) -> Tensor:
    """||x||^2 - 2 x.e + ||e||^2 for every row of x [M, D] and codeword e [N, D] -> [M, N]."""
    return (
        x.pow(2).sum(1, keepdim=True)  # [M, 1]
        - 2 * x @ embedding.t()  # [M, N]
        + embedding.pow(2).sum(1)[None]  # [1, N]
    )


def _sample_rows(x: Tensor, n: int) -> Tensor:
    """n rows of x [M, D], without replacement when M >= n, else with (torch's global RNG)."""
    m = x.shape[0]
    index = torch.randperm(m, device=x.device)[:n] if m >= n else torch.randint(
        m, (n,), device=x.device)
    return x[index]  # [n, D]


def kmeans(x: Tensor, num_clusters: int, iters: int) -> tuple[Tensor, Tensor]:
    """Lloyd's k-means from random rows; empty clusters keep their centroid.

    Args:
        x: [M, D] vectors.
        num_clusters: N.
        iters: Lloyd iterations.

    Returns:
        centroids [N, D] and the counts [N] of the last assignment.
    """
    centroids = _sample_rows(x, num_clusters)  # [N, D]
    counts = torch.zeros(num_clusters, device=x.device, dtype=x.dtype)
    for _ in range(iters):
        assign = squared_distances(x, centroids).argmin(1)  # [M]
        counts = torch.bincount(assign, minlength=num_clusters).to(x.dtype)  # [N]
        sums = torch.zeros_like(centroids).index_add_(0, assign, x)  # [N, D]
        filled = counts > 0
        centroids = torch.where(filled[:, None], sums / counts.clamp(min=1)[:, None], centroids)
    return centroids, counts


class EMACodebook(nn.Module):
    """One stage's codebook: codewords as buffers, learned by EMA of the vectors assigned.

    Args:
        config: the quantizer settings (size, dim, decay, init, dead-code threshold).
    """

    def __init__(self, config: QuantizerConfig) -> None:
        super().__init__()
        self.config = config
        n, d = config.codebook_size, config.dim
        embedding = torch.randn(n, d)  # random init; replaced by k-means when enabled
        self.register_buffer("embedding", embedding)  # [N, D]
        self.register_buffer("cluster_size", torch.ones(n))  # [N] EMA of counts
        self.register_buffer("embedding_sum", embedding.clone())  # [N, D] EMA of sums
        self.register_buffer("initialized", torch.tensor(not config.kmeans_init))

    def nearest(self, x: Tensor) -> Tensor:
        """Index of the nearest codeword for each row of x [M, D] -> [M] int64."""
        return squared_distances(x, self.embedding).argmin(1)

    @torch.no_grad()
    def init_kmeans(self, x: Tensor) -> None:
        """Set the codebook to k-means centroids of x [M, D] (rows sampled when M < N)."""
        centroids, counts = kmeans(x, self.config.codebook_size, self.config.kmeans_iters)
        self.embedding.copy_(centroids)
        self.cluster_size.copy_(counts)
        self.embedding_sum.copy_(centroids * counts[:, None])
        self.initialized.fill_(True)

    @torch.no_grad()
    def update(self, x: Tensor, codes: Tensor) -> int:
        """EMA step on the vectors x [M, D] assigned to codes [M], then re-seed dead codes.

        Returns:
            The number of dead codes re-seeded.
        """
        cfg = self.config
        counts = torch.bincount(codes, minlength=cfg.codebook_size).to(x.dtype)  # [N]
        sums = torch.zeros_like(self.embedding).index_add_(0, codes, x)  # [N, D]
        self.cluster_size.mul_(cfg.ema_decay).add_(counts, alpha=1 - cfg.ema_decay)
        self.embedding_sum.mul_(cfg.ema_decay).add_(sums, alpha=1 - cfg.ema_decay)
        # Laplace smoothing: no count reaches zero, the total is unchanged.
        total = self.cluster_size.sum()
        smoothed = (self.cluster_size + cfg.epsilon) / (total + cfg.codebook_size * cfg.epsilon)
        self.embedding.copy_(self.embedding_sum / (smoothed * total)[:, None])

        dead = self.cluster_size < cfg.dead_code_threshold  # [N]
        num_dead = int(dead.sum())
        if num_dead:
            fresh = _sample_rows(x, num_dead)  # [num_dead, D]
            self.embedding[dead] = fresh
            # A fresh codeword starts with an average count, so that it has time to win vectors
            # before it counts as dead again (starting at the threshold, it would be re-seeded
            # at the very next step whenever a batch holds fewer vectors than codes).
            grace = max(cfg.dead_code_threshold, float(self.cluster_size.mean()))
            self.cluster_size[dead] = grace
            self.embedding_sum[dead] = fresh * grace
        return num_dead


class ResidualVectorQuantizer(nn.Module):
    """Residual vector quantizer with K EMA codebooks (SoundStream, Zeghidour et al. 2021;
    EnCodec, Défossez et al. 2022).

    Args:
        config: number of stages, codebook size, dimension and EMA settings.
    """

    def __init__(self, config: QuantizerConfig) -> None:
        super().__init__()
        self.config = config
        self.codebooks = nn.ModuleList(EMACodebook(config) for _ in range(config.num_codebooks))
        k = config.num_codebooks
        self.last_stats = QuantizerStats(torch.zeros(k), torch.zeros(k), torch.zeros(k), False)

    def forward(self, latents: Tensor) -> QuantizerOutput:
        """Quantize; in training mode also initialise (once) and update the codebooks.

        Args:
            latents: [B, D, T] encoder output.

        Returns:
            A QuantizerOutput; usage statistics go to `self.last_stats`.
        """
        b, d, t = latents.shape
        x = latents.transpose(1, 2).reshape(b * t, d)  # [M, D], M = B * T
        residual = x
        inputs, quantized, residuals, codes, commitments = [], [], [], [], []
        replaced, ran_kmeans = [], False
        for codebook in self.codebooks:
            stage_input = residual.detach()  # [M, D]
            if self.training and not bool(codebook.initialized):
                codebook.init_kmeans(stage_input)
                logger.debug("k-means initialised a codebook from %d vectors", len(stage_input))
                ran_kmeans = True
            code = codebook.nearest(stage_input)  # [M]
            q = codebook.embedding[code]  # [M, D] a buffer: never differentiated
            if self.training:
                replaced.append(codebook.update(stage_input, code))
            commitments.append(F.mse_loss(residual, q))
            inputs.append(residual)
            # Straight-through: the value of q, the gradient of the identity w.r.t. the input.
            quantized.append(residual + (q - residual).detach())
            residual = residual - q
            residuals.append(residual)
            codes.append(code)

        def streams(rows: list[Tensor]) -> Tensor:
            return torch.stack(rows, 1).reshape(b, t, -1, d).transpose(1, 2)  # [B, K, T, D]

        total = sum(q.detach() for q in quantized)  # [M, D]
        quantized_st = x + (total - x).detach()  # straight-through for the sum of the stages
        codes_out = torch.stack(codes, 1).reshape(b, t, -1).transpose(1, 2)  # [B, K, T]
        self._record_stats(codes_out, replaced, ran_kmeans)
        return QuantizerOutput(
            quantized=quantized_st.reshape(b, t, d).transpose(1, 2),  # [B, D, T]
            codes=codes_out,
            commitment=torch.stack(commitments).mean(),
            residuals=streams(residuals),
            stage_quantized=streams(quantized),
            stage_inputs=streams(inputs),
        )

    @torch.no_grad()
    def encode(self, latents: Tensor) -> Tensor:
        """Codes of latents [B, D, T] -> [B, K, T] int64 (never updates the codebooks)."""
        b, d, t = latents.shape
        residual = latents.transpose(1, 2).reshape(b * t, d)  # [M, D]
        codes = []
        for codebook in self.codebooks:
            code = codebook.nearest(residual)  # [M]
            residual = residual - codebook.embedding[code]
            codes.append(code)
        return torch.stack(codes, 1).reshape(b, t, -1).transpose(1, 2)  # [B, K, T]

    def decode(self, codes: Tensor) -> Tensor:
        """Sum of the codewords of codes [B, K', T] (the first K' <= K stages) -> [B, D, T]."""
        if not 1 <= codes.shape[1] <= len(self.codebooks):
            raise ValueError(f"got {codes.shape[1]} codebooks, the quantizer has "
                             f"{len(self.codebooks)}")
        total = self.codebooks[0].embedding[codes[:, 0]]  # [B, T, D]
        for k in range(1, codes.shape[1]):
            total = total + self.codebooks[k].embedding[codes[:, k]]
        return total.transpose(1, 2)  # [B, D, T]

    @torch.no_grad()
    def _record_stats(self, codes: Tensor, replaced: list[int], ran_kmeans: bool) -> None:
        """Store per-stage usage of codes [B, K, T] in `self.last_stats`."""
        n = self.config.codebook_size
        flat = codes.transpose(0, 1).reshape(codes.shape[1], -1)  # [K, B * T]
        hist = torch.stack([torch.bincount(row, minlength=n) for row in flat]).float()  # [K, N]
        prob = hist / hist.sum(1, keepdim=True).clamp(min=1)
        entropy = -(prob * prob.clamp(min=1e-12).log()).sum(1)  # [K]
        dead = torch.tensor(replaced, dtype=torch.float) if replaced else torch.zeros(len(flat))
        self.last_stats = QuantizerStats(entropy.exp(), (hist > 0).sum(1).float(), dead,
                                         ran_kmeans)
