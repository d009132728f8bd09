"""Codec evaluation on held-out clips: reconstruction, dependence between codebooks, speed.

Reconstruction: mel distance, multi-scale STFT distance, SI-SDR. Dependence (METHOD.md §3):
pairwise mutual information between code streams, same-frame and delay-aligned, normalised by
the marginal entropies; code usage per codebook; held-out MMD² of the training loss. Speed:
encode and decode × real time on this machine.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from engine.audio import read_audio
from engine.codec import Codec
from engine.data.manifest import audio_path, read_manifest
from engine.independence import IndependenceConfig
from engine.losses import MelSpectrograms, ReconstructionConfig, mel_loss, si_sdr, stft_loss

log = logging.getLogger(__name__)


@torch.no_grad()
def evaluate_codec(codec: Codec, manifest: str | Path, *, max_clips: int | None = None,
                   independence: IndependenceConfig | None = None,
                   speed: bool = True) -> dict:
    """All codec numbers on the clips of one split's manifest.

    Args:
        codec: the codec (put in eval mode: codebooks are not updated).
        manifest: e.g. `data/indie-10h/test.jsonl`.
        max_clips: evaluate the first clips only.
        independence: the MMD settings for the held-out MMD² (the codec's training ones).
        speed: also measure encode/decode speed.

    Returns:
        A JSON-ready dict.
    """
    from engine.metrics.dependence import code_usage, heldout_mmd

    codec.eval()
    mmd_config = independence or IndependenceConfig()
    rows = read_manifest(manifest)[:max_clips]
    if not rows:
        raise ValueError(f"{manifest} has no clips")
    config = ReconstructionConfig(sample_rate=codec.sample_rate)
    mels = MelSpectrograms(config)
    sums = {"mel_distance": 0.0, "stft_distance": 0.0, "si_sdr_db": 0.0}
    codes, streams = [], []
    for row in rows:
        audio = read_audio(audio_path(manifest, row), codec.sample_rate)[None]  # [1, 1, N]
        out = codec(audio)
        sums["mel_distance"] += float(mel_loss(out.audio, audio, mels))
        sums["stft_distance"] += float(stft_loss(out.audio, audio, config.stft_windows))
        sums["si_sdr_db"] += float(si_sdr(out.audio, audio).mean())
        codes.append(out.codes[0])  # [K, T]
        streams.append(out.stream(mmd_config.stream)[0])  # [K, T, D]
    n = len(rows)
    result = {name: total / n for name, total in sums.items()}
    card = codec.cardinality
    flat = torch.cat(codes, dim=-1)[None]  # [1, K, sum T]: clips joined end to end
    per_clip = [c[None] for c in codes]
    result["clips"] = n
    result["seconds"] = round(sum(r.seconds for r in rows), 1)
    result["bitrate_bps"] = codec.num_codebooks * math.log2(card) * codec.frame_rate
    result["mi_same_frame"] = _mi_dict(_mi_over_clips(per_clip, card, False))
    result["mi_delay_aligned"] = _mi_dict(_mi_over_clips(per_clip, card, True))
    usage = code_usage(flat, card)
    result["code_usage"] = {name: list(map(float, values))
                            for name, values in asdict(usage).items()}
    t_max = min(s.shape[1] for s in streams)
    result["heldout_mmd"] = heldout_mmd(torch.stack([s[:, :t_max] for s in streams]), mmd_config)
    if speed:
        from engine.benchmarks.codec_speed import bench_codec_speed

        result["speed"] = bench_codec_speed(codec)
    return result


def _mi_over_clips(codes: list[torch.Tensor], cardinality: int, delay_aligned: bool):
    """Pairwise MI over clips of different lengths: pairs never cross a clip boundary."""
    from engine.metrics.dependence import pairwise_mutual_information

    t_min = min(c.shape[-1] for c in codes)
    batch = torch.cat([c[..., :t_min] for c in codes])  # [clips, K, T]
    return pairwise_mutual_information(batch, cardinality, delay_aligned=delay_aligned)


def _mi_dict(mi) -> dict:
    return {"mean_bits": float(mi.mean_bits), "mean_normalised": float(mi.mean_normalised),
            "bits": np.round(mi.bits, 4).tolist(),
            "normalised": np.round(mi.normalised, 4).tolist()}


def plot_mi_heatmaps(results: dict[str, dict], path: str | Path) -> Path:
    """Side-by-side normalised MI matrices (same-frame and delay-aligned) for each codec."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results)
    fig, axes = plt.subplots(2, len(names), figsize=(3.6 * len(names), 6.6), squeeze=False)
    vmax = max(max(max(v for i, row in enumerate(r[key]["normalised"])
                       for j, v in enumerate(row) if i != j) for key in
                   ("mi_same_frame", "mi_delay_aligned")) for r in results.values())
    for column, name in enumerate(names):
        for line, key in enumerate(("mi_same_frame", "mi_delay_aligned")):
            matrix = np.array(results[name][key]["normalised"], dtype=float)
            np.fill_diagonal(matrix, np.nan)
            ax = axes[line][column]
            image = ax.imshow(matrix, vmin=0, vmax=vmax, cmap="magma")
            for (i, j), value in np.ndenumerate(matrix):
                if not np.isnan(value):
                    ax.text(j, i, f"{value:.3f}", ha="center", va="center", color="w", fontsize=8)
            kind = "same frame" if line == 0 else "delay-aligned"
            ax.set_title(f"{name}: {kind}\nmean {results[name][key]['mean_normalised']:.4f}",
                         fontsize=9)
            ax.set_xlabel("codebook")
            ax.set_ylabel("codebook")
    fig.colorbar(image, ax=axes, shrink=0.6, label="I / sqrt(H_k H_l)")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


@torch.no_grad()
def plot_spectrograms(codecs: dict[str, Codec], audio: torch.Tensor, path: str | Path) -> Path:
    """Log-mel spectrograms of a clip `[1, 1, N]` and of each codec's reconstruction."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    first = next(iter(codecs.values()))
    mels = MelSpectrograms(ReconstructionConfig(sample_rate=first.sample_rate))
    panels = {"original": audio}
    for name, codec in codecs.items():
        panels[name] = codec.eval()(audio).audio
    fig, axes = plt.subplots(len(panels), 1, figsize=(9, 2.2 * len(panels)), squeeze=False)
    for ax, (name, signal) in zip(axes[:, 0], panels.items(), strict=True):
        spectrogram = mels(signal)[1][0, 0].numpy()  # [n_mels, frames], already log
        ax.imshow(spectrogram, origin="lower", aspect="auto", cmap="magma")
        ax.set_title(name, fontsize=9)
        ax.set_ylabel("mel bin")
    axes[-1, 0].set_xlabel("frame")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)
