"""Configuration of the independence experiment (METHOD.md §3-4): codecs × patterns."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from engine.config import replace_config
from engine.patterns import PATTERNS, get_pattern
from engine.train.lm_trainer import LMTrainConfig


def _shipped_codecs() -> dict[str, str]:
    return {"baseline": "engine/weights/codec-baseline.safetensors",
            "mmd": "engine/weights/codec.safetensors"}


@dataclass(frozen=True)
class ExperimentEvalConfig:
    """What each arm is measured on.

    Attributes:
        clips: test captions generated per arm (N clips; the other test clips are the FD
            reference set).
        seconds: length of each generated clip.
        seed: clip i is generated with seed + i.
        cfg, top_k: sampling (MusicGen defaults: γ = 3, top-k 250).
        valid_batches: fixed validation batches for the per-codebook cross-entropy.
        codec_clips: test clips for the codec's MI and held-out MMD² (0: all).
        threads: torch threads while generating (1: a decode step is too small to split).
    """

    clips: int = 16
    seconds: float = 4.0
    seed: int = 0
    cfg: float = 3.0
    top_k: int = 250
    valid_batches: int = 8
    codec_clips: int = 0
    threads: int = 1


@dataclass(frozen=True)
class IndependenceExperimentConfig:
    """Every arm trains `train` (same size, data, steps and seed) with its codec and pattern.

    Attributes:
        dataset: a built dataset folder (train/valid/test.jsonl).
        max_clips: per split, use this many clips spread over the split (0: all).
        codecs: arm name → codec weights (.safetensors) or a codec run's checkpoint.pt.
        patterns: decoding patterns, each trained as its own LM.
        train: the LM run of every arm; `lm.pattern` and `data.tokens` are set per arm and
            `lm.max_steps` is raised to what flattening needs.
        eval: generation and measurement settings.
        tagger: evaluation tagger weights ("": the shipped one).
        mmd_reference: the codec whose training MMD settings measure held-out MMD² of every
            codec (one yardstick for all; defaults when it has none).
    """

    dataset: str = "data/indie-10h"
    max_clips: int = 0
    codecs: dict[str, str] = field(default_factory=_shipped_codecs)
    patterns: tuple[str, ...] = PATTERNS
    train: LMTrainConfig = field(default_factory=LMTrainConfig)
    eval: ExperimentEvalConfig = field(default_factory=ExperimentEvalConfig)
    tagger: str = ""
    mmd_reference: str = "mmd"

    def __post_init__(self) -> None:
        unknown = [p for p in self.patterns if p not in PATTERNS]
        if unknown:
            raise ValueError(f"unknown patterns {unknown}; expected some of {PATTERNS}")
        if not self.codecs:
            raise ValueError("the experiment needs at least one codec")
        if self.eval.clips < 2:
            raise ValueError(f"eval.clips must be >= 2 (a Fréchet distance), got {self.eval.clips}")


def arm_name(codec: str, pattern: str) -> str:
    """`mmd` + `delay` → `mmd-delay` (the arm's run folder and row label)."""
    return f"{codec}-{pattern}"


def arm_train_config(config: IndependenceExperimentConfig, pattern: str, tokens: str,
                     codec) -> LMTrainConfig:
    """The LM run of one arm: the shared run with this pattern and token cache.

    The LM's codebooks and frame rate are the codec's (K, N, frame rate).
    `lm.max_steps` is the same for every arm (so the models are the same size): enough for
    the flatten pattern over a training crop and over a generated clip.
    """
    train = config.train
    k = codec.num_codebooks
    flatten = get_pattern("flatten")
    frames = math.ceil(config.eval.seconds * codec.frame_rate) + 1
    needed = max(flatten.num_steps(k, train.data.crop_frames), flatten.num_steps(k, frames))
    return replace_config(train, {"lm.pattern": pattern, "data.tokens": tokens,
                                  "lm.max_steps": max(train.lm.max_steps, needed),
                                  "lm.frame_rate": codec.frame_rate,
                                  "lm.num_codebooks": k,
                                  "lm.codebook_size": codec.cardinality},
                          source=f"arm {pattern}")
