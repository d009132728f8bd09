"""Quality metrics of generated music: distribution distance, label agreement, melody.

- `frechet_distance`: FD between Gaussians fitted to two embedding sets (FAD, with our
  tagger's embedding in place of VGGish).
- `posterior_kl`: KL between the tagger's posteriors of a reference clip and of the clip
  generated from the same caption (MusicGen's KL, with our tagger in place of PaSST).
- `label_adherence`: share of generated clips whose prompt labels the tagger recognises.
- `chroma_similarity`: cosine similarity between the melody condition's chroma and the
  output's chroma, frame by frame (MusicGen's melody metric).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import linalg

from engine.melody import Note, audio_to_chroma, notes_to_chroma

CHROMA_FRAME_RATE = 32000 / 4096  # MusicGen's chroma hop: 4096 samples at 32 kHz ≈ 7.8 Hz


def frechet_distance(a: np.ndarray, b: np.ndarray, eps: float = 1e-6) -> float:
    """Fréchet distance between Gaussians fitted to two sets of embeddings.

    ‖μa − μb‖² + tr(Σa + Σb − 2(Σa Σb)^½). With few samples the covariances are singular;
    a small `eps` on the diagonal keeps the matrix square root finite (as in FID/FAD code).

    Args:
        a, b: `[n, E]` and `[m, E]` embeddings, n, m ≥ 2.

    Returns:
        The distance (≥ 0, up to rounding).
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"expected [n, E] and [m, E] embeddings, got {a.shape} and {b.shape}")
    if len(a) < 2 or len(b) < 2:
        raise ValueError("each set needs at least 2 embeddings for a covariance")
    mu_a, mu_b = a.mean(axis=0), b.mean(axis=0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    offset = eps * np.eye(a.shape[1])
    root = linalg.sqrtm((cov_a + offset) @ (cov_b + offset))
    if not np.isfinite(root).all():
        raise ValueError("the covariance product has no finite square root")
    root = root.real  # imaginary parts are rounding noise for PSD products
    distance = float(((mu_a - mu_b) ** 2).sum()
                     + np.trace(cov_a) + np.trace(cov_b) - 2 * np.trace(root))
    return max(distance, 0.0)


def posterior_kl(reference: np.ndarray, generated: np.ndarray, eps: float = 1e-8) -> np.ndarray:
    """KL(reference ‖ generated) per pair of posteriors.

    Args:
        reference, generated: `[n, C]` class probabilities; row i of each comes from the same
            caption (the real clip and the generated one).

    Returns:
        `[n]` KL divergences in nats.
    """
    p = np.clip(np.asarray(reference, dtype=np.float64), eps, 1.0)
    q = np.clip(np.asarray(generated, dtype=np.float64), eps, 1.0)
    if p.shape != q.shape:
        raise ValueError(f"posteriors differ in shape: {p.shape} vs {q.shape}")
    p, q = p / p.sum(axis=1, keepdims=True), q / q.sum(axis=1, keepdims=True)
    return (p * (np.log(p) - np.log(q))).sum(axis=1)


def label_adherence(predicted: Sequence[str], asked: Sequence[str]) -> float:
    """Share of clips whose predicted label is the one the prompt asked for."""
    if len(predicted) != len(asked) or not asked:
        raise ValueError(f"need equal, non-empty lists, got {len(predicted)} and {len(asked)}")
    return float(np.mean([p == a for p, a in zip(predicted, asked, strict=True)]))


def chroma_similarity(melody: Sequence[Note], audio: np.ndarray, sample_rate: int,
                      frame_rate: float = CHROMA_FRAME_RATE) -> float | None:
    """Mean cosine similarity between the melody's chroma and the audio's, where the melody
    sounds.

    Both chromas are one-hot per frame (engine.melody), so a frame scores 1 when the output's
    strongest pitch class is the melody's and 0 otherwise (also when the output is silent).
    Caveat: MusicGen separates out drums and bass before taking the chroma; we analyse the
    whole mix, so a loud accompaniment voice can outweigh the melody even in real clips: the
    real clips' own score is the attainable value.

    Args:
        melody: the melody condition (notes in seconds from the clip's start).
        audio: mono output `[N]`.
        sample_rate: its rate.
        frame_rate: chroma frames per second.

    Returns:
        The similarity in [0, 1], or None when no melody note falls inside the audio.
    """
    output = audio_to_chroma(audio, sample_rate, frame_rate)  # [12, T]
    condition = notes_to_chroma(melody, frame_rate, output.shape[1])  # [12, T]
    sounding = condition.sum(axis=0) > 0
    if not sounding.any():
        return None
    return float((condition[:, sounding] * output[:, sounding]).sum(axis=0).mean())
