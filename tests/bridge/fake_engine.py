"""A stand-in for `engine.Engine` with the exact public API, for bridge tests without models.

It "generates" a deterministic tone, one block of `hop` samples per step, sleeping a little per
step as a real model would. The tone follows the melody (its current note's pitch) or else the
seed, so tests can tell which conditions reached the audio. `cancel()` stops a running
generate/stream within one block.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from engine.melody import Note


class EngineError(ValueError):
    """Bad input, as the real Engine raises it."""


@dataclass(frozen=True)
class GeneratedAudio:
    audio: np.ndarray
    sample_rate: int
    params: dict
    cancelled: bool


def tone_frequency(seed: int) -> float:
    """The tone's pitch when no melody is given: one of 12 semitones above A3."""
    return 220.0 * 2 ** ((seed % 12) / 12)


def pitch_frequency(pitch: int) -> float:
    return 440.0 * 2 ** ((pitch - 69) / 12)


class FakeStream:
    """Like engine.GenerationStream: an iterator of blocks with the resolved `params`."""

    def __init__(self, blocks: Iterator[np.ndarray], params: dict) -> None:
        self._blocks, self.params = blocks, params

    def __iter__(self) -> FakeStream:
        return self

    def __next__(self) -> np.ndarray:
        return next(self._blocks)

    def close(self) -> None:
        self._blocks.close()


@dataclass
class FakeEngine:
    """Engine API: sample_rate, frame_rate, max_seconds, generate, stream, cancel.

    Args:
        step_seconds: sleep per generated block (one codec frame).
        first_block_seconds: extra sleep before the first block (the prefill of a real LM).
        max_seconds: longest clip accepted.
    """

    step_seconds: float = 0.002
    first_block_seconds: float = 0.0
    max_seconds: float = 30.0
    sample_rate: int = 32000
    frame_rate: float = 50.0
    calls: list[dict[str, Any]] = field(default_factory=list)
    _cancel: threading.Event = field(default_factory=threading.Event)

    @property
    def hop(self) -> int:
        return int(round(self.sample_rate / self.frame_rate))

    def cancel(self) -> None:
        self._cancel.set()

    def generate(self, prompt: str, **kwargs: Any) -> GeneratedAudio:
        blocks = list(self.stream(prompt, **kwargs))
        audio = np.concatenate(blocks) if blocks else np.zeros(0, np.float32)
        params = dict(self.calls[-1])
        expected = int(round(params["seconds"] * self.sample_rate))
        return GeneratedAudio(audio, self.sample_rate, params, len(audio) < expected)

    def stream(self, prompt: str, seconds: float | None = None, bars: float | None = None,
               bpm: float | None = None, beats_per_bar: int = 4,
               melody: str | Path | Sequence[Note] | None = None, seed: int | None = None,
               pattern: str | None = None, temperature: float = 1.0, top_k: int = 250,
               top_p: float = 0.0, cfg: float = 3.0,
               continue_from: str | Path | np.ndarray | None = None,
               progress: Callable[[int, int], None] | None = None) -> Iterator[np.ndarray]:
        """Validate like the Engine, then return the block iterator (errors raise here)."""
        if not prompt or not prompt.strip():
            raise EngineError("empty prompt")
        if bars is not None:
            if not bpm:
                raise EngineError("bars needs bpm")
            seconds = bars * beats_per_bar * 60.0 / bpm
        seconds = 10.0 if seconds is None else float(seconds)
        if not 0 < seconds <= self.max_seconds:
            raise EngineError(f"seconds must be in (0, {self.max_seconds}], got {seconds}")
        if pattern not in (None, "parallel", "delay", "flatten", "coarse_first"):
            raise EngineError(f"unknown pattern {pattern!r}")
        if isinstance(melody, (str, Path)):
            raise EngineError(f"the fake engine reads no melody files: {melody}")
        seed = int(np.random.default_rng().integers(2**31)) if seed is None else seed
        notes = list(melody or ())
        self.calls.append(dict(prompt=prompt, seconds=seconds, bars=bars, bpm=bpm,
                               beats_per_bar=beats_per_bar, melody=notes, seed=seed,
                               pattern=pattern, temperature=temperature, top_k=top_k,
                               top_p=top_p, cfg=cfg, continue_from=continue_from))
        self._cancel.clear()
        blocks = self._blocks(int(round(seconds * self.sample_rate)), seed, notes, progress)
        return FakeStream(blocks, dict(self.calls[-1], melody=[list(n) for n in notes]))

    def _blocks(self, total: int, seed: int, notes: list[Note],
                progress: Callable[[int, int], None] | None) -> Iterator[np.ndarray]:
        steps = -(-total // self.hop)
        phase = 0.0
        if self.first_block_seconds:
            time.sleep(self.first_block_seconds)
        for step in range(steps):
            if self._cancel.is_set():
                return
            time.sleep(self.step_seconds)
            start = step * self.hop
            n = min(self.hop, total - start)
            t = (start + np.arange(n)) / self.sample_rate
            freq = np.full(n, tone_frequency(seed))
            for note in notes:
                inside = (t >= note.onset) & (t < note.offset)
                freq[inside] = pitch_frequency(note.pitch)
            phases = phase + 2 * np.pi * np.cumsum(freq) / self.sample_rate
            phase = float(phases[-1])
            if progress is not None:
                progress(step + 1, steps)
            yield (0.3 * np.sin(phases)).astype(np.float32)
