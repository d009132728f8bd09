"""The tempo condition, native to the model: a log-BPM embedding and a beat phase per frame.

No peer model takes the tempo as an input; they paste it into the prompt. Our data knows each
clip's exact BPM and where its bar lines fall, so the LM gets:

- `bpm_features`: the log of the BPM (relative to 120) and sines/cosines of it at a few scales,
  one vector per row; the LM projects it and adds it to every step;
- `phase_features`: per frame, sin and cos of 2π times the beats elapsed since the first
  downbeat, at periods of 4, 2, 1 and 1/2 beats (bar, half bar, beat, half beat); the LM
  projects them and adds them to the step aligned with that frame.

A row without tempo (BPM 0) gets zeros from both; the LM adds a learned "no tempo" vector.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

# Periods, in beats, whose phase the model sees (4/4 bar, half bar, beat, half beat).
PHASE_PERIODS = (4.0, 2.0, 1.0, 0.5)
NUM_PHASE_FEATURES = 2 * len(PHASE_PERIODS)
BPM_SCALES = (1.0, 2.0, 4.0, 8.0)
NUM_BPM_FEATURES = 1 + 2 * len(BPM_SCALES)


def has_tempo(bpm: Tensor) -> Tensor:
    """[B] bool: rows whose tempo is given."""
    return bpm > 0


def bpm_features(bpm: Tensor) -> Tensor:
    """log-BPM features.

    Args:
        bpm: [B] float (0: none).

    Returns:
        [B, NUM_BPM_FEATURES] float32, zeros on rows without tempo.
    """
    known = has_tempo(bpm)
    x = torch.log(bpm.float().clamp(min=1.0) / 120.0)  # [B], about -1..1 for 44..330 BPM
    scales = torch.tensor(BPM_SCALES, dtype=torch.float32, device=bpm.device)
    angles = x[:, None] * scales * math.pi  # [B, F]
    features = torch.cat([x[:, None], angles.sin(), angles.cos()], dim=-1)  # [B, 1 + 2F]
    return features * known[:, None]


def phase_features(bpm: Tensor, beat_offset: Tensor, frames: Tensor,
                   frame_rate: float) -> Tensor:
    """Beat phase of given frames.

    Args:
        bpm: [B] float (0: none).
        beat_offset: [B] seconds from frame 0 to the first downbeat.
        frames: [S] int64 frame indices (one per LM step).
        frame_rate: frames per second.

    Returns:
        [B, S, NUM_PHASE_FEATURES] float32, zeros on rows without tempo.
    """
    known = has_tempo(bpm)
    seconds = frames.to(torch.float64) / frame_rate  # [S]
    beats = (seconds[None] - beat_offset.double()[:, None]) * bpm.double()[:, None] / 60.0
    periods = torch.tensor(PHASE_PERIODS, dtype=torch.float64, device=bpm.device)
    # The phase is taken modulo each period in float64, so it stays exact for long clips.
    angles = 2 * math.pi * torch.remainder(beats[..., None], periods) / periods  # [B, S, P]
    features = torch.cat([angles.sin(), angles.cos()], dim=-1).float()  # [B, S, 2P]
    return features * known[:, None, None]
