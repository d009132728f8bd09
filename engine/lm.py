"""The language model over codec tokens, MusicGen-style [MG], with native tempo and melody.

The input of step s is the sum of K token embeddings (of the tokens of step s - 1; the special
token at step 0 and wherever the pattern holds no code) plus the time-aligned conditions of
the frame step s predicts (`Pattern.frame_of_step`): the projected
one-hot melody chroma, the log-BPM embedding and the beat phase. A pre-norm causal transformer
with cross-attention to the projected text tokens follows, then K linear heads give N logits
per codebook. Positions enter as ALiBi biases on the self-attention scores (default: runs past
the training length) or as sinusoids added to the input (`positions: sinusoidal`, as in [MG]).

Cross-attention always sees one learned "null" memory token besides the text tokens, so a row
without text (dropped for classifier-free guidance) attends to it instead of to nothing.

Two ways to run it, equal to 1e-4:

- `forward(sequence, conditions)` on whole sequences (training, scoring);
- `start(conditions, max_steps)` then `step(state, inputs)` with a key/value cache allocated
  once at its full size and written in place (gpt-fast style); cross-attention keys/values and
  the per-step condition inputs are computed once in `start`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from engine.conditioning import Conditions
from engine.conditioning.tempo import (
    NUM_BPM_FEATURES,
    NUM_PHASE_FEATURES,
    bpm_features,
    has_tempo,
    phase_features,
)
from engine.patterns import PATTERNS, get_pattern


@dataclass(frozen=True)
class LMConfig:
    """Size and training-time behaviour of the LM.

    `frame_rate` (codec frames per second) places the beat phase of each frame.
    """

    num_codebooks: int = 4
    codebook_size: int = 1024
    dim: int = 256
    num_layers: int = 6
    num_heads: int = 8
    ffn_mult: int = 4
    max_steps: int = 1100
    text_dim: int = 384
    pattern: str = "delay"
    dropout: float = 0.0
    condition_dropout: float = 0.2  # all conditions at once, for CFG
    melody_dropout: float = 0.5
    tempo_dropout: float = 0.2
    frame_rate: float = 50.0
    positions: str = "alibi"  # or "sinusoidal" (added to the input, as in [MG])

    def __post_init__(self) -> None:
        if self.pattern not in PATTERNS:
            raise ValueError(f"pattern must be one of {', '.join(PATTERNS)}, "
                             f"got {self.pattern!r}")
        if self.positions not in ("alibi", "sinusoidal"):
            raise ValueError(f"positions must be 'alibi' or 'sinusoidal', got {self.positions!r}")
        if self.dim % self.num_heads:
            raise ValueError(f"dim {self.dim} is not a multiple of num_heads {self.num_heads}")
        for name in ("num_codebooks", "codebook_size", "dim", "num_layers", "num_heads",
                     "ffn_mult", "max_steps", "text_dim"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("dropout", "condition_dropout", "melody_dropout", "tempo_dropout"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if not self.frame_rate > 0:
            raise ValueError(f"frame_rate must be > 0, got {self.frame_rate}")


class LMLoss(NamedTuple):
    """Cross-entropy (nats) over the pattern-valid positions."""

    total: Tensor  # [] mean over all valid positions
    per_codebook: Tensor  # [K]


@dataclass
class LMState:
    """Streaming state of `LanguageModel.step`: caches allocated once in `start`."""

    keys: list[Tensor]  # per layer [B, H, max_steps, hd], written in place
    values: list[Tensor]
    cross_keys: list[Tensor]  # per layer [B, H, M, hd]
    cross_values: list[Tensor]
    cross_mask: Tensor  # [B, 1, 1, M] bool
    extra: Tensor  # [B, max_steps, D] position + time-aligned conditions of every step
    position: int = 0  # steps consumed so far

    @property
    def max_steps(self) -> int:
        return self.extra.shape[1]


class Block(nn.Module):
    """Pre-norm block: causal self-attention, cross-attention to text, feed-forward."""

    def __init__(self, config: LMConfig) -> None:
        super().__init__()
        dim = config.dim
        self.heads = config.num_heads
        self.dropout = config.dropout
        self.norm_self = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.out_self = nn.Linear(dim, dim, bias=False)
        self.norm_cross = nn.LayerNorm(dim)
        self.q_cross = nn.Linear(dim, dim, bias=False)
        self.kv_cross = nn.Linear(dim, 2 * dim, bias=False)
        self.out_cross = nn.Linear(dim, dim, bias=False)
        self.norm_ffn = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(nn.Linear(dim, config.ffn_mult * dim), nn.GELU(),
                                 nn.Linear(config.ffn_mult * dim, dim))

    def _split(self, x: Tensor) -> Tensor:
        B, S, D = x.shape
        return x.view(B, S, self.heads, D // self.heads).transpose(1, 2)  # [B, H, S, hd]

    def _merge(self, x: Tensor) -> Tensor:
        B, H, S, hd = x.shape
        return x.transpose(1, 2).reshape(B, S, H * hd)  # [B, S, D]

    def cross_kv(self, memory: Tensor) -> tuple[Tensor, Tensor]:
        """Keys and values [B, H, M, hd] of the text memory [B, M, D]."""
        k, v = self.kv_cross(memory).chunk(2, dim=-1)
        return self._split(k), self._split(v)

    def forward(self, x: Tensor, cross_k: Tensor, cross_v: Tensor, cross_mask: Tensor,
                self_mask: Tensor | None,
                cache: tuple[Tensor, Tensor, int] | None = None) -> Tensor:
        """x [B, n, D] -> [B, n, D].

        Without a cache, x is a whole sequence. With `cache = (keys, values, start)` x holds
        steps start..start+n-1; their keys/values are written into the cache and the queries
        attend to steps 0..start+n-1. `self_mask` ([n, end] bool, or [1, H, n, end] additive
        ALiBi bias with -inf on future steps) makes it causal; None means causal without a
        mask (whole sequence) or no mask at all (a single cached step).
        """
        p = self.dropout if self.training else 0.0
        q, k, v = self.qkv(self.norm_self(x)).chunk(3, dim=-1)
        q, k, v = self._split(q), self._split(k), self._split(v)  # [B, H, n, hd]
        if self_mask is not None and self_mask.is_floating_point():
            self_mask = self_mask.to(q.dtype)  # bf16 under autocast
        if cache is None:
            attn = F.scaled_dot_product_attention(q, k, v, attn_mask=self_mask, dropout_p=p,
                                                  is_causal=self_mask is None)
        else:
            keys, values, start = cache
            end = start + x.shape[1]
            keys[:, :, start:end].copy_(k)
            values[:, :, start:end].copy_(v)
            attn = F.scaled_dot_product_attention(q, keys[:, :, :end], values[:, :, :end],
                                                  attn_mask=self_mask)
        x = x + F.dropout(self.out_self(self._merge(attn)), p, self.training)
        q = self._split(self.q_cross(self.norm_cross(x)))  # [B, H, n, hd]
        # Written out: with a few dozen text keys the plain matmuls beat the CPU's fused
        # kernel (4x in bf16 training, forward + backward).
        scores = q @ cross_k.transpose(-2, -1) * q.shape[-1] ** -0.5  # [B, H, n, M]
        weights = scores.masked_fill(~cross_mask, float("-inf")).softmax(dim=-1)
        attn = F.dropout(weights, p, self.training).to(cross_v.dtype) @ cross_v  # [B, H, n, hd]
        x = x + F.dropout(self.out_cross(self._merge(attn)), p, self.training)
        return x + F.dropout(self.ffn(self.norm_ffn(x)), p, self.training)


class LanguageModel(nn.Module):
    """Codec-token LM of [MG] with text cross-attention, time-aligned melody and tempo.

    Args:
        config: sizes; the special token id is `config.codebook_size` (each of the K embedding
            blocks has N + 1 rows).
    """

    def __init__(self, config: LMConfig) -> None:
        super().__init__()
        self.config = config
        K, N, D = config.num_codebooks, config.codebook_size, config.dim
        self.special = N
        self.pattern = get_pattern(config.pattern)
        # K tables of N + 1 rows stored as one: token t of codebook k is row k * (N + 1) + t.
        self.embed = nn.Embedding(K * (N + 1), D)
        self.register_buffer("offsets", torch.arange(K)[:, None] * (N + 1), persistent=False)
        if config.positions == "sinusoidal":
            self.register_buffer("positions", _sinusoids(config.max_steps, D), persistent=False)
        else:
            self.positions = None
            self.register_buffer("slopes", _alibi_slopes(config.num_heads), persistent=False)
        self.text_norm = nn.LayerNorm(config.text_dim)
        self.text_proj = nn.Linear(config.text_dim, D)
        self.null_text = nn.Parameter(torch.zeros(D))
        self.melody_proj = nn.Linear(12, D, bias=False)  # an all-zero chroma adds nothing
        self.bpm_proj = nn.Linear(NUM_BPM_FEATURES, D)
        self.null_tempo = nn.Parameter(torch.zeros(D))
        self.phase_proj = nn.Linear(NUM_PHASE_FEATURES, D, bias=False)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.num_layers))
        self.out_norm = nn.LayerNorm(D)
        self.heads = nn.Linear(D, K * N, bias=False)  # K heads in one matrix
        self.apply(self._init)
        for block in self.blocks:  # residual branches scaled down with depth (GPT-2)
            for linear in (block.out_self, block.out_cross, block.ffn[2]):
                nn.init.normal_(linear.weight, std=0.02 / math.sqrt(2 * config.num_layers))

    @staticmethod
    def _init(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.02)
            if getattr(module, "bias", None) is not None:
                nn.init.zeros_(module.bias)

    # --- conditions ----------------------------------------------------------------------

    def memory(self, conditions: Conditions) -> tuple[Tensor, Tensor]:
        """Text memory [B, 1 + L, D] (null token first) and its mask [B, 1, 1, 1 + L]."""
        B = conditions.batch_size
        dtype = self.heads.weight.dtype  # conditions come in fp32; the model may be bf16
        text = self.text_proj(self.text_norm(conditions.text.to(dtype)))  # [B, L, D]
        memory = torch.cat([self.null_text.expand(B, 1, -1), text], dim=1)  # [B, M, D]
        mask = F.pad(conditions.text_mask.bool(), (1, 0), value=True)  # [B, M]
        return memory, mask[:, None, None, :]

    def step_extras(self, conditions: Conditions, steps: int) -> Tensor:
        """What is added to the token embeddings at steps 0..steps-1: [B, steps, D].

        The melody chroma and beat phase of the frame each step is aligned with
        (`Pattern.frame_of_step` over the conditions' T frames), the tempo, and the position
        (sinusoidal positions only).
        """
        if steps > self.config.max_steps:
            raise ValueError(f"{steps} steps exceed the model's max_steps "
                             f"{self.config.max_steps}")
        K, T = self.config.num_codebooks, conditions.num_frames
        if T < 1:
            raise ValueError("conditions must cover at least one frame")
        frames = self.pattern.frame_of_step(K, T)[:steps]
        if len(frames) < steps:  # steps past the pattern's end stay on the last frame
            frames = F.pad(frames, (0, steps - len(frames)), value=T - 1)
        frames = frames.clamp(max=T - 1).to(conditions.melody.device)  # [steps]
        dtype = self.heads.weight.dtype
        chroma = conditions.melody[:, :, frames].transpose(1, 2).to(dtype)  # [B, n, 12]
        melody = self.melody_proj(chroma)  # [B, n, D]
        phase = self.phase_proj(phase_features(conditions.bpm, conditions.beat_offset, frames,
                                               self.config.frame_rate).to(dtype))  # [B, n, D]
        tempo = torch.where(has_tempo(conditions.bpm)[:, None],
                            self.bpm_proj(bpm_features(conditions.bpm).to(dtype)),
                            self.null_tempo)  # [B, D]
        extras = melody + phase + tempo[:, None]
        return extras if self.positions is None else extras + self.positions[:steps]

    def _self_mask(self, start: int, n: int, whole: bool = False) -> Tensor | None:
        """Self-attention mask of queries at steps start..start+n-1 over keys 0..start+n-1.

        ALiBi (Press et al., 2022): head h adds -slope_h · distance to its scores, so that the
        model can run past the length it was trained on (a 10 s crop is 503 delay steps;
        generation and continuation go up to max_steps). Sinusoidal: a causal bool mask,
        or None for a `whole` sequence (the kernel's causal flag) and for a single step.
        """
        end = start + n
        device = self.heads.weight.device
        if self.positions is None:
            queries = torch.arange(start, end, device=device)[:, None]
            distance = (queries - torch.arange(end, device=device)[None]).float()  # [n, end]
            bias = -self.slopes[:, None, None] * distance  # [H, n, end]
            # 4-D: a 3-D mask sends the CPU kernel down a path 4x slower in training.
            return bias.masked_fill(distance < 0, float("-inf"))[None]  # [1, H, n, end]
        if whole or n == 1:
            return None
        rows = torch.arange(start, end, device=device)[:, None]
        return torch.arange(end, device=device)[None] <= rows  # [n, end]

    def _embed(self, tokens: Tensor) -> Tensor:
        """Sum of the K embeddings of tokens [B, K, n] -> [B, n, D]."""
        return self.embed(tokens + self.offsets).sum(dim=1)

    def _logits(self, h: Tensor) -> Tensor:
        """Hidden [B, n, D] -> logits [B, K, n, N]."""
        B, n, _ = h.shape
        logits = self.heads(self.out_norm(h))  # [B, n, K * N]
        return logits.view(B, n, self.config.num_codebooks, -1).transpose(1, 2)

    # --- training ------------------------------------------------------------------------

    def forward(self, sequence: Tensor, conditions: Conditions) -> Tensor:
        """Logits of every step of a pattern sequence.

        Args:
            sequence: [B, K, S] tokens (special token where the pattern holds no code).
            conditions: batch B, time-aligned over the T frames of the sequence.

        Returns:
            [B, K, S, N]: the logits at step s predict sequence[:, :, s] from steps < s.
        """
        B, K, S = sequence.shape
        inputs = F.pad(sequence[:, :, :-1], (1, 0), value=self.special)  # [B, K, S], shifted
        memory, mask = self.memory(conditions)
        h = self._embed(inputs) + self.step_extras(conditions, S)  # [B, S, D]
        self_mask = self._self_mask(0, S, whole=True)
        for block in self.blocks:
            h = block(h, *block.cross_kv(memory), mask, self_mask)
        return self._logits(h)

    # --- streaming -----------------------------------------------------------------------

    @torch.inference_mode()
    def start(self, conditions: Conditions, max_steps: int | None = None) -> LMState:
        """Allocate the caches for `conditions`' batch and up to `max_steps` input steps."""
        max_steps = self.config.max_steps if max_steps is None else max_steps
        B, H = conditions.batch_size, self.config.num_heads
        hd = self.config.dim // H
        memory, mask = self.memory(conditions)
        cross = [block.cross_kv(memory) for block in self.blocks]
        param = self.heads.weight
        shape = (B, H, max_steps, hd)
        return LMState(
            keys=[param.new_zeros(shape) for _ in self.blocks],
            values=[param.new_zeros(shape) for _ in self.blocks],
            cross_keys=[k for k, _ in cross], cross_values=[v for _, v in cross],
            cross_mask=mask, extra=self.step_extras(conditions, max_steps))

    @torch.inference_mode()
    def step(self, state: LMState, inputs: Tensor) -> Tensor:
        """Consume n input steps and return the logits of the next step.

        Args:
            state: from `start`; advanced in place by n.
            inputs: [B, K, n] tokens; the first call begins with the special token column.

        Returns:
            [B, K, N] logits of the step after the last consumed one.
        """
        start, n = state.position, inputs.shape[-1]
        if start + n > state.max_steps:
            raise ValueError(f"{start + n} steps exceed the {state.max_steps} allocated "
                             "in start()")
        h = self._embed(inputs) + state.extra[:, start:start + n]  # [B, n, D]
        self_mask = self._self_mask(start, n)
        for i, block in enumerate(self.blocks):
            h = block(h, state.cross_keys[i], state.cross_values[i], state.cross_mask,
                      self_mask, cache=(state.keys[i], state.values[i], start))
        state.position = start + n
        return self._logits(h[:, -1:])[:, :, 0]  # [B, K, N]


def lm_loss(logits: Tensor, sequence: Tensor, valid_mask: Tensor) -> LMLoss:
    """Cross-entropy of the logits against the sequence over pattern-valid positions.

    Args:
        logits: [B, K, S, N].
        sequence: [B, K, S] targets.
        valid_mask: [K, S] or [B, K, S] bool; invalid positions do not count.
    """
    B, K, S, N = logits.shape
    valid = valid_mask.expand(B, K, S)
    targets = sequence.masked_fill(~valid, 0)
    ce = F.cross_entropy(logits.reshape(-1, N).float(), targets.reshape(-1),
                         reduction="none").view(B, K, S)
    weight = valid.float()
    per_codebook = (ce * weight).sum(dim=(0, 2)) / weight.sum(dim=(0, 2)).clamp(min=1.0)
    total = (ce * weight).sum() / weight.sum().clamp(min=1.0)
    return LMLoss(total, per_codebook)


def drop_conditions(conditions: Conditions, config: LMConfig,
                    generator: torch.Generator | None = None) -> Conditions:
    """Training-time condition dropout, one coin per row and kind (for CFG, [MG]).

    With probability `condition_dropout` a row loses every condition; independently it loses
    its melody with `melody_dropout` and its tempo with `tempo_dropout`.
    """
    # Drawn on the CPU generator (reproducible, saved in checkpoints), then moved.
    coins = torch.rand(3, conditions.batch_size, generator=generator)  # [3, B]
    coins = coins.to(conditions.bpm.device)
    everything = coins[0] < config.condition_dropout
    return conditions.drop(text=everything,
                           melody=everything | (coins[1] < config.melody_dropout),
                           tempo=everything | (coins[2] < config.tempo_dropout))


def _alibi_slopes(heads: int) -> Tensor:
    """ALiBi's geometric head slopes 2^(-8h/H), h = 1..H: [H]."""
    return 2.0 ** (-8.0 * torch.arange(1, heads + 1, dtype=torch.float32) / heads)


def _sinusoids(length: int, dim: int) -> Tensor:
    """Sinusoidal positions [length, dim] (Vaswani et al.)."""
    position = torch.arange(length, dtype=torch.float32)[:, None]
    freqs = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(length, dim)
    table[:, 0::2] = torch.sin(position * freqs)
    table[:, 1::2] = torch.cos(position * freqs[: dim // 2])
    return table
