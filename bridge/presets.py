"""Presets: YAML files in presets/ holding a prompt, its length and tempo, sampling parameters
and a MIDI CC map, checked on load with errors that name the file and the key.

A preset file is read as untrusted YAML (bridge.safe_yaml: at most 64 KB, no anchors or
aliases, shallow); its name is its file name (a `name` key is refused as unknown). Its melody
is a MIDI file path relative to the preset, and (like the preset itself when named over OSC)
it must stay inside the presets folder: `..`, absolute paths and symlinks that lead out are
refused.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from bridge.paths import PathRefused, inside
from bridge.safe_yaml import load_untrusted_yaml
from bridge.settings import SettingError, Settings
from engine.config import ConfigError, from_dict
from engine.inputs import EngineError, read_midi_notes
from engine.melody import Note

# What a CC (0..127) can move, and the range it spans.
CC_RANGES: dict[str, tuple[float, float]] = {
    "temperature": (0.2, 2.0),
    "cfg": (0.0, 10.0),
    "top_k": (1.0, 500.0),
    "top_p": (0.0, 1.0),
}


@dataclass(frozen=True)
class Preset:
    """One preset file. Exactly one of seconds / bars; bars take the preset's bpm (or the
    host tempo when served)."""

    prompt: str
    seconds: float | None = None
    bars: float | None = None
    bpm: float | None = None
    beats_per_bar: int = 4
    key: str | None = None
    melody: str | None = None
    pattern: str | None = None
    temperature: float = 1.0
    top_k: int = 250
    top_p: float = 0.0
    cfg: float = 3.0
    seed: int = -1
    variations: int = 1
    format: Literal["wav", "flac"] = "wav"
    cc: dict[int, str] = field(default_factory=dict)
    source: str = ""  # the file it came from (set on load, not a YAML key)

    @property
    def name(self) -> str:
        return Path(self.source).stem

    @property
    def full_prompt(self) -> str:
        """The prompt, with the key added as words ('..., in D minor')."""
        return f"{self.prompt}, in {self.key}" if self.key else self.prompt

    def apply(self, settings: Settings) -> Settings:
        """The session settings with this preset's values."""
        values = {"prompt": self.full_prompt, "beats_per_bar": self.beats_per_bar,
                  "temperature": self.temperature, "top_k": self.top_k, "top_p": self.top_p,
                  "cfg": self.cfg, "seed": self.seed, "format": self.format,
                  "pattern": self.pattern or "", "bpm": self.bpm or 0.0,
                  "bars": self.bars or 0.0}
        if self.seconds is not None:
            values["seconds"] = self.seconds
        return settings.with_values(values)

    def melody_path(self) -> Path | None:
        """The melody MIDI file, resolved inside the presets folder."""
        if not self.melody:
            return None
        folder = Path(self.source).parent
        try:
            return inside(folder, self.melody)
        except PathRefused as error:
            raise ConfigError(f"{self.source}: key 'melody': {error}") from None

    def melody_notes(self) -> list[Note]:
        """The melody's notes (bounded as engine.inputs reads MIDI files); ConfigError naming
        the preset and the key when the file is missing, too large or unreadable."""
        path = self.melody_path()
        if path is None:
            return []
        if not path.is_file():
            raise ConfigError(f"{self.source}: key 'melody': no such MIDI file {path}")
        try:
            return read_midi_notes(path)
        except EngineError as error:
            raise ConfigError(f"{self.source}: key 'melody': {error}") from None


def load_preset_file(path: str | Path) -> Preset:
    """Load and check one preset file.

    Raises:
        ConfigError: a missing, too large, non-UTF-8 or unreadable file, a YAML bomb, an
            unknown key, a wrong type or a value out of range; the message names the file and
            the key.
    """
    path = Path(path)
    source = str(path)
    data = load_untrusted_yaml(path)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping of keys at top level, got "
                          f"{type(data).__name__}")
    if "source" in data:
        raise ConfigError(f"{source}: unknown key 'source'")
    preset = from_dict(Preset, data, source=source)
    preset = dataclasses.replace(preset, source=source)
    _check(preset)
    return preset


def load_preset(folder: str | Path, name: str) -> Preset:
    """Load `<folder>/<name>.yaml`, refusing names that leave the folder."""
    try:
        path = inside(folder, f"{name}.yaml")
    except PathRefused as error:
        raise ConfigError(f"preset {name!r}: {error}") from None
    if not path.is_file():
        names = ", ".join(sorted(p.stem for p in Path(folder).glob("*.yaml"))) or "none"
        raise ConfigError(f"no preset named {name!r} in {folder} (available: {names})")
    return load_preset_file(path)


def cc_value(name: str, value: int) -> float | int:
    """Map a CC value 0..127 onto the range of the setting `name`."""
    low, high = CC_RANGES[name]
    mapped = low + (high - low) * value / 127
    return int(round(mapped)) if name == "top_k" else mapped


def _check(preset: Preset) -> None:
    def fail(key: str, problem: str) -> ConfigError:
        return ConfigError(f"{preset.source}: key {key!r}: {problem}")

    if not preset.prompt.strip():
        raise fail("prompt", "expected a non-empty prompt")
    if (preset.seconds is None) == (preset.bars is None):
        raise fail("seconds", "give exactly one of 'seconds' or 'bars'")
    if preset.variations < 1 or preset.variations > 1000:
        raise fail("variations", f"expected 1..1000, got {preset.variations}")
    checks = {"seconds": preset.seconds, "bars": preset.bars, "bpm": preset.bpm,
              "beats_per_bar": preset.beats_per_bar, "temperature": preset.temperature,
              "top_k": preset.top_k, "top_p": preset.top_p, "cfg": preset.cfg,
              "seed": preset.seed, "pattern": preset.pattern or ""}
    settings = Settings()
    for key, value in checks.items():
        if value is None:
            continue
        try:
            settings.with_value(key, value)
        except SettingError as error:
            raise fail(key, str(error)) from None
    if preset.bpm is not None and preset.bpm < 20:
        raise fail("bpm", f"expected 20..400, got {preset.bpm:g}")
    for number, target in preset.cc.items():
        if not 0 <= number <= 127:
            raise fail(f"cc.{number}", "CC numbers are 0..127")
        if target not in CC_RANGES:
            raise fail(f"cc.{number}", f"expected one of {', '.join(CC_RANGES)}, got {target!r}")
    preset.melody_path()
