"""The audio tagger: a small CNN on log-mel spectrograms that names a clip's labels.

It predicts the dataset's labels (ensemble family, tempo bucket, mode, style) and serves three
evaluation metrics: its penultimate layer is the embedding of our Fréchet distance (our own
embedding, not VGGish: numbers are comparable only between runs of this tagger), its posteriors
give the KL between generated and reference clips of the same caption (as MusicGen's KL, with
our tagger in place of PaSST), and its predictions give text adherence.

    tagger = load_tagger()                                   # the shipped weights
    out = tag_clips(tagger, [audio_a, audio_b], 32000)       # float32 mono arrays
    out.embeddings                                           # [2, E]
    out.probs["family"]                                      # [2, 12]
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torchaudio
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from engine.atomic import atomic_path, write_json_atomic
from engine.config import from_dict, to_dict

DEFAULT_TAGGER = Path(__file__).resolve().parents[1] / "weights" / "tagger.safetensors"

HEADS = ("family", "tempo", "mode", "style")  # ClipLabels fields the tagger predicts


@dataclass(frozen=True)
class TaggerConfig:
    """Features, network size and the label vocabulary of each head.

    Attributes:
        sample_rate: audio rate the features are computed at (other rates are resampled).
        n_fft, hop_length, n_mels, f_min, f_max: the log-mel spectrogram (hop 640 = 50 frames/s).
        channels: output channels of the conv blocks (each halves time and frequency).
        embedding_dim: width of the penultimate layer (the Fréchet-distance embedding).
        dropout: before the heads, in training.
        log_std: the spread of the training set's log-mel values, to scale the inputs.
        classes: label names per head, in logit order (from the training split).
    """

    sample_rate: int = 32000
    n_fft: int = 1024
    hop_length: int = 640
    n_mels: int = 64
    f_min: float = 30.0
    f_max: float = 15000.0
    channels: tuple[int, ...] = (16, 32, 64, 128)
    embedding_dim: int = 128
    dropout: float = 0.2
    log_std: float = 1.0
    classes: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = set(self.classes) - set(HEADS)
        if unknown:
            raise ValueError(f"unknown heads {sorted(unknown)} (known: {', '.join(HEADS)})")
        if not self.channels:
            raise ValueError("channels must name at least one conv block")


class LogMel(nn.Module):
    """Audio `[B, N]` → log-mel `[B, n_mels, T]`, level-normalised per clip.

    Each clip's mean log energy is subtracted, so the tagger judges timbre and pitch, not
    loudness: a codec or a generator that plays quieter than the data is not penalised for it.
    """

    def __init__(self, config: TaggerConfig) -> None:
        super().__init__()
        self.config = config
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=config.sample_rate, n_fft=config.n_fft, hop_length=config.hop_length,
            n_mels=config.n_mels, f_min=config.f_min, f_max=config.f_max, power=2.0,
            center=True)

    def forward(self, audio: Tensor) -> Tensor:
        return normalise(self.raw(audio), self.config.log_std)

    def raw(self, audio: Tensor) -> Tensor:
        """Unnormalised log-mel `[B, n_mels, T]` (what the trainer caches)."""
        return torch.log(self.mel(audio) + 1e-6)


def normalise(log_mel: Tensor, log_std: float) -> Tensor:
    """Subtract each clip's mean log energy and scale: `[B, M, T]` → `[B, M, T]`."""
    return (log_mel - log_mel.mean(dim=(1, 2), keepdim=True)) / log_std


@dataclass(frozen=True)
class TaggerOutput:
    """Logits per head (`[B, C_head]`) and the embedding `[B, E]` of a batch."""

    logits: dict[str, Tensor]
    embedding: Tensor


class Tagger(nn.Module):
    """Conv blocks (3×3 conv, batch norm, ReLU, 2×2 max pool), mean+max pooling over time,
    one hidden layer (the embedding) and a linear head per label."""

    def __init__(self, config: TaggerConfig) -> None:
        super().__init__()
        self.config = config
        self.features = LogMel(config)
        blocks, width = [], 1
        for channels in config.channels:
            blocks += [nn.Conv2d(width, channels, 3, padding=1, bias=False),
                       nn.BatchNorm2d(channels), nn.ReLU(), nn.MaxPool2d(2)]
            width = channels
        self.blocks = nn.Sequential(*blocks)
        self.embed = nn.Sequential(nn.Linear(2 * width, config.embedding_dim), nn.ReLU())
        self.dropout = nn.Dropout(config.dropout)
        self.heads = nn.ModuleDict({name: nn.Linear(config.embedding_dim, len(labels))
                                    for name, labels in config.classes.items()})

    def forward(self, log_mel: Tensor) -> TaggerOutput:
        """Args: log_mel `[B, n_mels, T]` (from `self.features`); any T ≥ 2**len(channels)."""
        x = self.blocks(log_mel[:, None])  # [B, C, M', T']
        x = x.mean(dim=2)  # [B, C, T']: frequency is summarised by the conv stack
        pooled = torch.cat([x.mean(dim=-1), x.amax(dim=-1)], dim=-1)  # [B, 2C]
        embedding = self.embed(pooled)  # [B, E]
        hidden = self.dropout(embedding)
        return TaggerOutput({name: head(hidden) for name, head in self.heads.items()}, embedding)


@dataclass(frozen=True)
class TagResult:
    """The tagger's view of a set of clips.

    Attributes:
        embeddings: `[n, E]` float64 penultimate activations.
        probs: per head, `[n, C]` float64 posteriors.
        predictions: per head, the most likely label of each clip.
    """

    embeddings: np.ndarray
    probs: dict[str, np.ndarray]
    predictions: dict[str, list[str]]


@torch.no_grad()
def tag_clips(tagger: Tagger, clips: list[np.ndarray | Tensor], sample_rate: int) -> TagResult:
    """Embeddings, posteriors and predictions of whole clips (any lengths), one at a time.

    Args:
        tagger: the tagger (put in eval mode here).
        clips: mono audio, each `[N]` or `[1, N]`.
        sample_rate: the rate of `clips`.
    """
    tagger.eval()
    config = tagger.config
    min_samples = config.hop_length * 2 ** len(config.channels)
    embeddings, probs = [], {name: [] for name in config.classes}
    for clip in clips:
        audio = torch.as_tensor(np.asarray(clip, dtype=np.float32)).reshape(1, -1)  # [1, N]
        if sample_rate != config.sample_rate:
            audio = torchaudio.functional.resample(audio, sample_rate, config.sample_rate)
        if audio.shape[-1] < min_samples:  # too short for the pooling stack: pad with silence
            audio = torch.nn.functional.pad(audio, (0, min_samples - audio.shape[-1]))
        out = tagger(tagger.features(audio))
        embeddings.append(out.embedding[0].double().numpy())
        for name, logits in out.logits.items():
            probs[name].append(torch.softmax(logits[0].double(), dim=-1).numpy())
    stacked = {name: np.stack(p) if p else np.zeros((0, len(config.classes[name])))
               for name, p in probs.items()}
    predictions = {name: [config.classes[name][i] for i in p.argmax(axis=1)]
                   for name, p in stacked.items()}
    width = config.embedding_dim
    return TagResult(np.stack(embeddings) if embeddings else np.zeros((0, width)), stacked,
                     predictions)


def export_tagger(tagger: Tagger, path: str | Path, provenance: dict[str, Any]) -> Path:
    """Write the tagger's weights (floats as fp16: small) and its manifest beside them."""
    path = Path(path)
    tensors = {name: (t.detach().half() if t.is_floating_point() else t.detach()).contiguous()
               for name, t in tagger.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp))
    write_json_atomic(path.with_suffix(".json"),
                      {"model": "tagger", "config": to_dict(tagger.config), "dtype": "float16",
                       **provenance})
    return path


def load_tagger(path: str | Path | None = None) -> Tagger:
    """The tagger from safetensors + manifest (the shipped one when `path` is None)."""
    path = Path(path) if path else DEFAULT_TAGGER
    manifest = path.with_suffix(".json")
    if not path.is_file() or not manifest.is_file():
        raise FileNotFoundError(f"tagger weights need {path} and {manifest} "
                                f"(`indie train tagger` makes them)")
    meta = json.loads(manifest.read_text(encoding="utf-8"))
    tagger = Tagger(from_dict(TaggerConfig, meta["config"], source=str(manifest)))
    state = {name: t.float() if t.is_floating_point() else t
             for name, t in load_file(str(path)).items()}
    tagger.load_state_dict(state)
    return tagger.eval()
