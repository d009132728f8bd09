"""Pitch accuracy of an output's melody line against the melody condition, with torchcrepe.

CREPE (its weights ship inside the `torchcrepe` package; nothing is downloaded) tracks the
dominant pitch of the output every 20 ms. Against the melody notes this gives the two standard
melody-extraction scores (as in mir_eval): raw pitch accuracy (the tracked pitch within 50
cents of the melody note) and raw chroma accuracy (the same, octaves folded), over the frames
where a melody note sounds; a frame with no confident pitch counts as a miss.

The output is polyphonic: CREPE follows the most salient voice, which is not always the
melody, so real clips of the dataset do not score 1 either; compare with their score.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torchaudio

from engine.melody import Note

CREPE_RATE = 16000  # CREPE's input rate
HOP_SECONDS = 0.02


@dataclass(frozen=True)
class PitchAccuracy:
    """`raw_pitch` and `raw_chroma` accuracy in [0, 1] over `frames` melody frames."""

    raw_pitch: float
    raw_chroma: float
    frames: int


def available() -> bool:
    """Whether torchcrepe is installed (the `eval` extra)."""
    try:
        import torchcrepe  # noqa: F401
    except ImportError:
        return False
    return True


def track_pitch(audio: np.ndarray, sample_rate: int, model: str = "tiny",
                periodicity_threshold: float = 0.4) -> np.ndarray:
    """The dominant pitch every HOP_SECONDS, as fractional MIDI numbers (NaN: unvoiced).

    Args:
        audio: mono samples `[N]`.
        sample_rate: their rate.
        model: "tiny" (fast on a CPU) or "full".
        periodicity_threshold: frames less periodic than this count as unvoiced.

    Returns:
        `[F]` float64, frame f centred at f · HOP_SECONDS.
    """
    import torchcrepe

    samples = torch.as_tensor(np.asarray(audio, dtype=np.float32)).reshape(1, -1)  # [1, N]
    if sample_rate != CREPE_RATE:
        samples = torchaudio.functional.resample(samples, sample_rate, CREPE_RATE)
    with torch.no_grad():
        f0, periodicity = torchcrepe.predict(
            samples, CREPE_RATE, hop_length=round(HOP_SECONDS * CREPE_RATE), fmin=50.0,
            fmax=2000.0, model=model, decoder=torchcrepe.decode.weighted_argmax,
            return_periodicity=True, batch_size=256, device="cpu")
    f0, periodicity = f0[0].double().numpy(), periodicity[0].double().numpy()  # [F]
    midi = 69.0 + 12.0 * np.log2(np.maximum(f0, 1e-6) / 440.0)
    midi[(periodicity < periodicity_threshold) | ~np.isfinite(midi)] = np.nan
    return midi


def melody_frames(melody: Sequence[Note], num_frames: int) -> np.ndarray:
    """The melody's MIDI pitch at each frame centre (the highest sounding note; NaN: rest)."""
    times = np.arange(num_frames) * HOP_SECONDS
    reference = np.full(num_frames, np.nan)
    for pitch, onset, offset in melody:
        sounding = (times >= onset) & (times < offset)
        reference[sounding] = np.fmax(reference[sounding], float(pitch))
    return reference


def pitch_accuracy(melody: Sequence[Note], audio: np.ndarray, sample_rate: int,
                   model: str = "tiny") -> PitchAccuracy | None:
    """How often the output's tracked pitch matches the melody condition.

    Returns:
        The accuracies, or None when no melody note falls inside the audio.
    """
    tracked = track_pitch(audio, sample_rate, model)
    reference = melody_frames(melody, len(tracked))
    voiced = np.isfinite(reference)
    if not voiced.any():
        return None
    cents = 100.0 * (tracked[voiced] - reference[voiced])  # NaN where unvoiced: a miss
    folded = (cents + 600.0) % 1200.0 - 600.0
    with np.errstate(invalid="ignore"):
        pitch_hits = np.abs(cents) <= 50.0
        chroma_hits = np.abs(folded) <= 50.0
    return PitchAccuracy(float(pitch_hits.mean()), float(chroma_hits.mean()), int(voiced.sum()))
