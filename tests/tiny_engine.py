"""Tiny random models for generation tests: a codec, an LM, a text encoder double, an engine."""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from engine.codec import Codec, CodecConfig
from engine.engine import Engine
from engine.lm import LanguageModel, LMConfig
from engine.quantizer import QuantizerConfig

K, N = 4, 16  # codebooks, codes per codebook
TEXT_DIM = 384


def tiny_codec() -> Codec:
    """A random causal codec: 50 frames/s at 32 kHz, K=4 codebooks of 16 codes."""
    torch.manual_seed(0)
    config = CodecConfig(base_channels=4, latent_dim=8,
                         quantizer=QuantizerConfig(num_codebooks=K, codebook_size=N, dim=8,
                                                   kmeans_init=False))
    return Codec(config).eval()


def tiny_lm(pattern: str = "delay", max_steps: int = 256, seed: int = 0) -> LanguageModel:
    """A random 2-layer LM over the tiny codec's codes, with sharp (far from uniform) logits."""
    torch.manual_seed(seed)
    config = LMConfig(num_codebooks=K, codebook_size=N, dim=32, num_layers=2, num_heads=2,
                      ffn_mult=2, max_steps=max_steps, pattern=pattern)
    lm = LanguageModel(config)
    with torch.no_grad():  # larger than a trainable init, so that every condition shows
        for parameter in lm.parameters():
            if parameter.dim() > 1:
                parameter.normal_(0.0, 0.3)
    return lm.eval()


class FixedTextEncoder:
    """A stand-in for MiniLM: a fixed random embedding per word (seeded by the word)."""

    def __init__(self) -> None:
        self.calls = 0

    def encode(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        self.calls += 1
        words = [prompt.split() or [""] for prompt in prompts]
        length = max(len(w) for w in words)
        embeddings = torch.zeros(len(prompts), length, TEXT_DIM)  # [B, L, 384]
        mask = torch.zeros(len(prompts), length, dtype=torch.bool)  # [B, L]
        for row, prompt_words in enumerate(words):
            for col, word in enumerate(prompt_words):
                seed = int.from_bytes(hashlib.sha1(word.encode()).digest()[:4], "little")
                generator = torch.Generator().manual_seed(seed)
                embeddings[row, col] = torch.randn(TEXT_DIM, generator=generator)
                mask[row, col] = True
        return embeddings, mask


def tiny_engine(pattern: str = "delay", max_steps: int = 256, **kwargs) -> Engine:
    """An engine of tiny random models and the text double."""
    return Engine(tiny_codec(), tiny_lm(pattern, max_steps), FixedTextEncoder(), **kwargs)


def export_tiny_weights(folder: Path, pattern: str = "delay") -> tuple[Path, Path]:
    """Tiny codec and LM as shipped-style safetensors + manifests; returns their paths."""
    from engine.weights import export_codec, export_lm

    codec = export_codec(tiny_codec(), folder / "codec.safetensors", {"note": "tiny test"})
    lm = export_lm(tiny_lm(pattern), folder / "lm.safetensors", {"note": "tiny test"})
    return Path(codec), Path(lm)
