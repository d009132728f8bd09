"""Melodies as notes, and the one-hot chroma that conditions the LM on them.

MusicGen [MG] conditions on a chromagram reduced to a one-hot of its loudest pitch class per
frame. We build the same representation two ways: from notes (a score's melody voice, or a MIDI
keyboard), and from audio. Both give `[12, T]` float32 arrays on the same frame grid: frame `i`
covers `[i / frame_rate, (i + 1) / frame_rate)` seconds, and an all-zero column means "no melody".
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import NamedTuple

import numpy as np
import torch


class Note(NamedTuple):
    """One melody note: MIDI pitch, onset and offset in seconds."""

    pitch: int
    onset: float
    offset: float


def top_line(notes: Iterable[Note]) -> list[Note]:
    """Reduce notes to a monophonic line: at each instant, the highest note that started last.

    A note ends where the next melody note starts, so chords and overlaps become one voice, as a
    listener hears the top of a keyboard melody.

    Returns:
        Notes sorted by onset, non-overlapping, with positive durations.
    """
    # Among notes starting together keep the highest; then cut each note at the next onset.
    by_onset: dict[float, Note] = {}
    for note in notes:
        if note.offset <= note.onset:
            continue
        kept = by_onset.get(note.onset)
        if kept is None or note.pitch > kept.pitch:
            by_onset[note.onset] = note
    ordered = [by_onset[t] for t in sorted(by_onset)]
    line = []
    for note, following in zip(ordered, ordered[1:] + [None], strict=False):
        offset = note.offset if following is None else min(note.offset, following.onset)
        line.append(Note(note.pitch, note.onset, offset))
    return line


def crop_notes(notes: Iterable[Note], start: float, end: float) -> list[Note]:
    """Notes overlapping `[start, end)`, clipped to it and shifted so that `start` is 0."""
    cropped = []
    for note in notes:
        onset, offset = max(note.onset, start), min(note.offset, end)
        if offset > onset:
            cropped.append(Note(note.pitch, onset - start, offset - start))
    return cropped


def notes_to_chroma(notes: Sequence[Note], frame_rate: float, num_frames: int) -> np.ndarray:
    """One-hot chroma of notes: per frame, the pitch class sounding longest within it.

    Args:
        notes: notes with times in seconds (any polyphony; durations are summed per class).
        frame_rate: frames per second of the output grid.
        num_frames: number of frames T.

    Returns:
        `[12, T]` float32, one 1 per frame that any note overlaps, zeros elsewhere.
    """
    energy = np.zeros((12, num_frames), dtype=np.float64)  # seconds of each class per frame
    frame_seconds = 1.0 / frame_rate
    for pitch, onset, offset in notes:
        first = max(int(np.floor(onset * frame_rate)), 0)
        last = min(int(np.ceil(offset * frame_rate)), num_frames)
        if last <= first:
            continue
        starts = np.arange(first, last) * frame_seconds
        overlap = np.minimum(offset, starts + frame_seconds) - np.maximum(onset, starts)
        energy[pitch % 12, first:last] += np.clip(overlap, 0.0, None)
    return _one_hot_of_argmax(energy, threshold=1e-9)


def audio_to_chroma(
    audio: torch.Tensor | np.ndarray,
    sample_rate: int,
    frame_rate: float,
    *,
    window_seconds: float = 0.5,
    silence_db: float = -60.0,
) -> np.ndarray:
    """One-hot chroma of audio on the same frame grid as `notes_to_chroma`.

    Args:
        audio: mono samples, `[N]` or `[1, N]`.
        sample_rate: samples per second of `audio`.
        frame_rate: frames per second of the output grid (MusicGen: 32000 / 4096 ≈ 7.8).
        window_seconds: analysis window, centred on each frame; MusicGen uses 2**14 samples.
        silence_db: frames quieter than this (RMS, dBFS) get no pitch class.

    Returns:
        `[12, T]` float32 with `T = ceil(N * frame_rate / sample_rate)`.
    """
    samples = torch.as_tensor(np.asarray(audio, dtype=np.float32)).reshape(-1)  # [N]
    hop = sample_rate / frame_rate
    num_frames = int(np.ceil(len(samples) / hop))
    n_fft = int(2 ** np.ceil(np.log2(window_seconds * sample_rate)))
    centres = ((np.arange(num_frames) + 0.5) * hop).astype(np.int64)
    padded = torch.nn.functional.pad(samples, (n_fft // 2, n_fft // 2 + int(np.ceil(hop))))
    # Frame i is the window centred on the middle of [i*hop, (i+1)*hop): [T, n_fft].
    frames = padded[torch.as_tensor(centres)[:, None] + torch.arange(n_fft)[None, :]]
    window = torch.hann_window(n_fft)
    power = torch.fft.rfft(frames * window, dim=-1).abs().square()  # [T, n_fft/2+1]
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
    audible = (freqs >= 50.0) & (freqs <= 5000.0)  # below: rumble; above: mostly overtones
    classes = np.round(12 * np.log2(freqs[audible] / 440.0) + 69).astype(np.int64) % 12
    fold = np.zeros((12, int(audible.sum())))
    fold[classes, np.arange(len(classes))] = 1.0
    energy = fold @ power[:, torch.as_tensor(audible)].double().numpy().T  # [12, T]
    rms_db = 10 * np.log10(frames.square().mean(dim=-1).double().numpy() + 1e-12)
    energy[:, rms_db < silence_db] = 0.0
    return _one_hot_of_argmax(energy, threshold=1e-12)


def _one_hot_of_argmax(energy: np.ndarray, threshold: float) -> np.ndarray:
    """`[12, T]` energies → one-hot of the largest class per frame (zeros where all ≤ threshold)."""
    chroma = np.zeros(energy.shape, dtype=np.float32)
    active = energy.max(axis=0) > threshold
    chroma[energy.argmax(axis=0)[active], np.flatnonzero(active)] = 1.0
    return chroma
