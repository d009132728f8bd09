"""Batch rendering of presets: each variation a file with its JSON sidecar."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from pathlib import Path

from bridge.paths import slug
from bridge.presets import Preset
from engine.atomic import write_json_atomic
from engine.audio import write_audio
from engine.config import ConfigError


def variation_seed(preset: Preset, variation: int) -> int:
    """Variation v of a preset with seed s uses s + v; an unseeded preset draws fresh seeds."""
    return preset.seed + variation if preset.seed >= 0 else secrets.randbelow(2**31)


def render_variation(engine, preset: Preset, variation: int, out_dir: Path,
                     progress: Callable[[int, int], None] | None = None) -> Path:
    """Render one variation of a preset with Engine.generate; returns the audio file written.

    The file is `<out>/<preset>-<variation>-s<seed>.<format>` with a `.json` sidecar holding the
    engine's parameters (seed included), the preset and its file.
    """
    if preset.bars is not None and not preset.bpm:
        raise ConfigError(f"{preset.source}: key 'bars': rendering bars needs 'bpm'")
    seed = variation_seed(preset, variation)
    result = engine.generate(preset.full_prompt, seconds=preset.seconds, bars=preset.bars,
                             bpm=preset.bpm, beats_per_bar=preset.beats_per_bar,
                             melody=preset.melody_notes() or None, seed=seed,
                             pattern=preset.pattern, temperature=preset.temperature,
                             top_k=preset.top_k, top_p=preset.top_p, cfg=preset.cfg,
                             progress=progress)
    path = Path(out_dir) / f"{slug(preset.name)}-{variation:03d}-s{seed}.{preset.format}"
    write_audio(path, result.audio, result.sample_rate)
    params = {k: (str(v) if isinstance(v, Path) else v) for k, v in result.params.items()}
    write_json_atomic(path.with_suffix(".json"), {
        "preset": preset.source, "variation": variation, "seed": seed,
        "seconds": len(result.audio) / result.sample_rate, "sample_rate": result.sample_rate,
        "params": _plain(params)})
    return path


def _plain(value):
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "_asdict"):
        return dict(value._asdict())
    if hasattr(value, "tolist"):
        return value.tolist() if getattr(value, "size", 2) < 2 else f"<array {value.shape}>"
    return value
