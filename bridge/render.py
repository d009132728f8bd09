"""Batch rendering of presets: each variation a file with its JSON sidecar.

Rendering (`render_clip`, the engine's work) and writing (`save_clip`, atomic files) are apart,
so that Ray workers can render and the driver can write (bridge/ray_render.py).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bridge.jobs import plain, write_with_sidecar
from bridge.paths import slug
from bridge.presets import Preset
from engine.config import ConfigError
from engine.melody import Note


@dataclass(frozen=True)
class RenderedClip:
    """One rendered variation, not yet written.

    Attributes:
        name: the file name without its suffix, `<preset>-<variation>-s<seed>`.
        format: "wav" or "flac".
        audio: float32 mono samples.
        sample_rate: samples per second.
        sidecar: the JSON written beside the audio.
    """

    name: str
    format: str
    audio: np.ndarray
    sample_rate: int
    sidecar: dict[str, Any]


def variation_seed(preset: Preset, variation: int) -> int:
    """Variation v of a preset with seed s uses s + v; an unseeded preset draws fresh seeds."""
    return preset.seed + variation if preset.seed >= 0 else secrets.randbelow(2**31)


def check_renderable(preset: Preset) -> None:
    """Raise ConfigError for a preset that `render_clip` would refuse."""
    if preset.bars is not None and not preset.bpm:
        raise ConfigError(f"{preset.source}: key 'bars': rendering bars needs 'bpm'")


def render_clip(engine, preset: Preset, variation: int, seed: int | None = None,
                progress: Callable[[int, int], None] | None = None,
                melody: Sequence[Note] | None = None) -> RenderedClip:
    """Render one variation of a preset with Engine.generate.

    Args:
        seed: the variation's seed (default: `variation_seed`, drawn here for an unseeded
            preset).
        melody: the preset's melody notes (default: read from its MIDI file here).
    """
    check_renderable(preset)
    seed = variation_seed(preset, variation) if seed is None else seed
    notes = preset.melody_notes() if melody is None else list(melody)
    result = engine.generate(preset.full_prompt, seconds=preset.seconds, bars=preset.bars,
                             bpm=preset.bpm, beats_per_bar=preset.beats_per_bar,
                             melody=notes or None, seed=seed,
                             pattern=preset.pattern, temperature=preset.temperature,
                             top_k=preset.top_k, top_p=preset.top_p, cfg=preset.cfg,
                             progress=progress)
    sidecar = {"preset": preset.source, "variation": variation, "seed": seed,
               "seconds": len(result.audio) / result.sample_rate,
               "sample_rate": result.sample_rate, "params": plain(result.params)}
    return RenderedClip(f"{slug(preset.name)}-{variation:03d}-s{seed}", preset.format,
                        result.audio, result.sample_rate, sidecar)


def save_clip(clip: RenderedClip, out_dir: Path) -> Path:
    """Write the clip and its `.json` sidecar (as bridge.jobs.write_with_sidecar); returns the
    audio path."""
    return write_with_sidecar(Path(out_dir) / f"{clip.name}.{clip.format}", clip.audio,
                              clip.sample_rate, clip.sidecar)


def render_variation(engine, preset: Preset, variation: int, out_dir: Path,
                     progress: Callable[[int, int], None] | None = None) -> Path:
    """Render one variation of a preset and write it; returns the audio file written.

    The file is `<out>/<preset>-<variation>-s<seed>.<format>` with a `.json` sidecar holding the
    engine's parameters (seed included), the preset and its file.
    """
    return save_clip(render_clip(engine, preset, variation, progress=progress), out_dir)
