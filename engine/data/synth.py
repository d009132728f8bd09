"""Render MIDI to audio with FluidSynth (Debian's `fluidsynth` and `fluid-soundfont-gm`)."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import soundfile

DEFAULT_SOUNDFONT = "/usr/share/sounds/sf2/FluidR3_GM.sf2"
_INSTALL_HINT = "install it with: apt-get install fluidsynth fluid-soundfont-gm"


class SynthError(RuntimeError):
    """FluidSynth or the SoundFont is missing, or rendering failed."""


def check_synth(soundfont: str | Path = DEFAULT_SOUNDFONT) -> str:
    """The path of the fluidsynth program; a clear error when it or the SoundFont is missing."""
    program = shutil.which("fluidsynth")
    if program is None:
        raise SynthError(f"FluidSynth is not installed; {_INSTALL_HINT}")
    if not Path(soundfont).is_file():
        raise SynthError(f"SoundFont not found: {soundfont}; {_INSTALL_HINT}")
    return program


def render_midi(midi_path: str | Path, soundfont: str | Path = DEFAULT_SOUNDFONT,
                sample_rate: int = 32000) -> np.ndarray:
    """Render a MIDI file offline (faster than real time) to mono float32 samples `[N]`."""
    program = check_synth(soundfont)
    with tempfile.TemporaryDirectory(prefix="indie-synth-") as tmp:
        wav = Path(tmp) / "render.wav"
        # -n/-i: no MIDI input, no shell; float output so that loud chords do not clip.
        command = [program, "-n", "-i", "-q", "-g", "0.4", "-r", str(sample_rate),
                   "-o", "audio.file.format=float", "-o", "synth.cpu-cores=1",
                   "-F", str(wav), str(soundfont), str(midi_path)]
        result = subprocess.run(command, capture_output=True, text=True, timeout=600)
        if result.returncode != 0 or not wav.is_file():
            raise SynthError(f"fluidsynth failed on {midi_path}: {result.stderr.strip()[-500:]}")
        samples, rate = soundfile.read(wav, dtype="float32", always_2d=True)
    if rate != sample_rate:
        raise SynthError(f"fluidsynth rendered at {rate} Hz, asked for {sample_rate} Hz")
    return samples.mean(axis=1)  # [N]: the SoundFont's stereo image folded to mono
