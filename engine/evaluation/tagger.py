"""The audio tagger: a small CNN that names a clip's labels from its log-mel spectrogram,
with a transposition-invariant chroma branch (for mode) and an onset-periodicity feature (for
tempo) beside it.

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
from engine.weights import manifest_path, read_manifest, sha256_of

DEFAULT_TAGGER = Path(__file__).resolve().parents[1] / "weights" / "tagger.safetensors"

HEADS = ("family", "tempo", "mode", "style")  # ClipLabels fields the tagger predicts


@dataclass(frozen=True)
class TaggerConfig:
    """Features, network size and the label vocabulary of each head.

    Attributes:
        sample_rate: audio rate the features are computed at (other rates are resampled).
        n_fft, hop_length, n_mels, f_min, f_max: the log-mel spectrogram (hop 640 = 50 frames/s).
        channels: output channels of the mel conv blocks (each halves time and frequency).
        chroma_fft: window of the chroma's STFT (4096 samples: 7.8 Hz bins at 32 kHz).
        chroma_channels: the two conv layers of the chroma branch.
        rhythm_bins, rhythm_dim: tempi (40-240 BPM, log-spaced) at which the onset
            autocorrelation is read, and the width of the layer reading them.
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
    chroma_fft: int = 4096
    chroma_channels: tuple[int, int] = (16, 32)
    rhythm_bins: int = 32
    rhythm_dim: int = 32
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


class Features(nn.Module):
    """Audio `[B, N]` → log-mel `[B, n_mels, T]` and chroma `[B, 12, T]` on one frame grid.

    The log-mel is level-normalised per clip (`normalise`): each clip's mean log energy is
    subtracted, so the tagger judges timbre, pitch and rhythm, not loudness (a generator that
    plays quieter than the data is not penalised for it). The chroma is each frame's energy per
    pitch class (60 Hz - 4 kHz) as a distribution over the 12 classes (zeros in silence).
    """

    def __init__(self, config: TaggerConfig) -> None:
        super().__init__()
        self.config = config
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=config.sample_rate, n_fft=config.n_fft, hop_length=config.hop_length,
            n_mels=config.n_mels, f_min=config.f_min, f_max=config.f_max, power=2.0,
            center=True)
        freqs = np.fft.rfftfreq(config.chroma_fft, 1.0 / config.sample_rate)
        audible = (freqs >= 60.0) & (freqs <= 4000.0)
        classes = np.round(12 * np.log2(np.maximum(freqs, 1e-6) / 440.0) + 69).astype(int) % 12
        fold = np.zeros((12, len(freqs)), dtype=np.float32)
        fold[classes[audible], np.flatnonzero(audible)] = 1.0
        self.register_buffer("fold", torch.from_numpy(fold), persistent=False)
        self.register_buffer("window", torch.hann_window(config.chroma_fft), persistent=False)

    def forward(self, audio: Tensor) -> tuple[Tensor, Tensor]:
        """Normalised log-mel and chroma of audio `[B, N]`."""
        log_mel, chroma = self.raw(audio)
        return normalise(log_mel, self.config.log_std), chroma

    def raw(self, audio: Tensor) -> tuple[Tensor, Tensor]:
        """Unnormalised log-mel `[B, n_mels, T]` and chroma `[B, 12, T]` (the trainer caches
        these)."""
        log_mel = torch.log(self.mel(audio) + 1e-6)  # [B, M, T]
        spectrum = torch.stft(audio, self.config.chroma_fft, self.config.hop_length,
                              window=self.window, center=True, return_complex=True)
        energy = self.fold @ spectrum.abs().square()  # [12, F] @ [B, F, T] -> [B, 12, T]
        total = energy.sum(dim=1, keepdim=True)  # [B, 1, T]
        loud = total > 1e-6 * total.amax(dim=-1, keepdim=True).clamp_min(1e-10)
        chroma = torch.where(loud, energy / total.clamp_min(1e-12), torch.zeros_like(energy))
        return log_mel, chroma[..., : log_mel.shape[-1]]


def normalise(log_mel: Tensor, log_std: float) -> Tensor:
    """Subtract each clip's mean log energy and scale: `[B, M, T]` → `[B, M, T]`."""
    return (log_mel - log_mel.mean(dim=(1, 2), keepdim=True)) / log_std


def onset_autocorrelation(log_mel: Tensor, frame_rate: float, bins: int) -> Tensor:
    """Autocorrelation of the spectral flux at `bins` tempi from 40 to 240 BPM: `[B, bins]`.

    A fixed (not learned) rhythm feature: how periodic the onsets are at each beat period.
    """
    flux = torch.relu(log_mel.diff(dim=-1)).mean(dim=1)  # [B, T-1]
    flux = flux - flux.mean(dim=-1, keepdim=True)
    length = flux.shape[-1]
    spectrum = torch.fft.rfft(flux, 2 * length)
    acf = torch.fft.irfft(spectrum.abs().square(), 2 * length)[..., :length]  # [B, T-1]
    acf = acf / (length - torch.arange(length, device=acf.device))  # mean product per lag
    acf = acf / acf[..., :1].clamp_min(1e-8)
    lags = 60.0 * frame_rate / torch.logspace(np.log10(40.0), np.log10(240.0), bins)
    lags = lags.clamp(max=length - 2)
    low = lags.floor().long()
    frac = (lags - low).to(acf.dtype)
    return acf[..., low] * (1 - frac) + acf[..., low + 1] * frac  # [B, bins]


@dataclass(frozen=True)
class TaggerOutput:
    """Logits per head (`[B, C_head]`) and the embedding `[B, E]` of a batch."""

    logits: dict[str, Tensor]
    embedding: Tensor


class Tagger(nn.Module):
    """Three views of a clip joined in one embedding, then a linear head per label.

    - timbre: conv blocks on the log-mel (3×3 conv, batch norm, ReLU, 2×2 max pool), mean and
      max over time;
    - harmony: two convs on the chroma, circular over the 12 pitch classes, then the max over
      them: invariant to transposition, so it learns intervals (a minor third over the
      strongest class) rather than keys;
    - rhythm: the onset autocorrelation at 40-240 BPM (`onset_autocorrelation`).
    """

    def __init__(self, config: TaggerConfig) -> None:
        super().__init__()
        self.config = config
        self.features = Features(config)
        blocks, width = [], 1
        for channels in config.channels:
            blocks += [nn.Conv2d(width, channels, 3, padding=1, bias=False),
                       nn.BatchNorm2d(channels), nn.ReLU(), nn.MaxPool2d(2)]
            width = channels
        self.blocks = nn.Sequential(*blocks)
        first, second = config.chroma_channels
        self.chroma1 = nn.Sequential(nn.Conv2d(1, first, (12, 5), bias=False),
                                     nn.BatchNorm2d(first), nn.ReLU())
        self.chroma2 = nn.Sequential(nn.Conv2d(first, second, (3, 3), bias=False),
                                     nn.BatchNorm2d(second), nn.ReLU())
        self.rhythm = nn.Sequential(nn.Linear(config.rhythm_bins, config.rhythm_dim), nn.ReLU())
        joined = 2 * width + 2 * second + config.rhythm_dim
        self.embed = nn.Sequential(nn.Linear(joined, config.embedding_dim), nn.ReLU())
        self.dropout = nn.Dropout(config.dropout)
        self.heads = nn.ModuleDict({name: nn.Linear(config.embedding_dim, len(labels))
                                    for name, labels in config.classes.items()})

    def forward(self, log_mel: Tensor, chroma: Tensor) -> TaggerOutput:
        """Args: log_mel `[B, n_mels, T]` (normalised) and chroma `[B, 12, T]`, from
        `self.features`; any T ≥ 2**len(channels)."""
        x = self.blocks(log_mel[:, None])  # [B, C, M', T']
        x = x.mean(dim=2)  # [B, C, T']: frequency is summarised by the conv stack
        timbre = torch.cat([x.mean(dim=-1), x.amax(dim=-1)], dim=-1)  # [B, 2C]

        c = nn.functional.pad(chroma[:, None], (0, 0, 6, 5), mode="circular")  # [B,1,23,T]
        c = self.chroma1(nn.functional.pad(c, (2, 2)))  # [B, c1, 12, T]
        c = nn.functional.avg_pool2d(c, (1, 4), ceil_mode=True)  # [B, c1, 12, T/4]
        c = nn.functional.pad(c, (0, 0, 1, 1), mode="circular")
        c = self.chroma2(nn.functional.pad(c, (1, 1)))  # [B, c2, 12, T/4]
        c = c.amax(dim=2)  # [B, c2, T/4]: the best transposition
        harmony = torch.cat([c.mean(dim=-1), c.amax(dim=-1)], dim=-1)  # [B, 2 c2]

        frame_rate = self.config.sample_rate / self.config.hop_length
        rhythm = self.rhythm(onset_autocorrelation(log_mel, frame_rate,
                                                   self.config.rhythm_bins))  # [B, R]
        embedding = self.embed(torch.cat([timbre, harmony, rhythm], dim=-1))  # [B, E]
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
        out = tagger(*tagger.features(audio))
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
                       "sha256": sha256_of(path), **provenance})
    return path


def load_tagger(path: str | Path | None = None) -> Tagger:
    """The tagger from safetensors + manifest (the shipped one when `path` is None)."""
    path = Path(path) if path else DEFAULT_TAGGER
    meta = read_manifest(path)  # checks the file against its checksum
    tagger = Tagger(from_dict(TaggerConfig, meta["config"], source=str(manifest_path(path))))
    state = {name: t.float() if t.is_floating_point() else t
             for name, t in load_file(str(path)).items()}
    tagger.load_state_dict(state)
    return tagger.eval()
