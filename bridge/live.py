"""Live mode: chunk after chunk through the sound card, following the prompt and the melody.

Each chunk is one `Engine.stream` call built from the session's current settings and the note
being played. Chunks meet without a gap: the worker starts the next chunk as soon as the last
block of the previous one is queued, while the ring buffer still holds audio, and the chunks
overlap by a short equal-power crossfade (so no click either). A new note restarts generation at
once: the buffered audio is cut back to a little headroom and crossfaded into the new chunk.
With a tempo, chunks are whole bars long.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bridge.jobs import Job

logger = logging.getLogger(__name__)

CROSSFADE_SECONDS = 0.01
# Each chunk continues the last this-many seconds of audio (the engine's continue_from).
CONTEXT_SECONDS = 1.0
# Audio kept in the buffer when a note restarts generation: covers the next chunk's first block.
RESTART_HEADROOM_SECONDS = 0.15


@dataclass
class LiveStats:
    """What live mode did, for status and the benchmark."""

    chunks: int = 0
    restarts: int = 0
    # Monotonic time of each chunk start; note time → the first block of its chunk queued.
    chunk_starts: deque[float] = field(default_factory=lambda: deque(maxlen=1000))
    note_to_chunk: deque[float] = field(default_factory=lambda: deque(maxlen=1000))


def equal_power(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Fade-out and fade-in curves of n samples whose powers sum to one."""
    x = (np.arange(n) + 0.5) / n
    return np.cos(0.5 * np.pi * x).astype(np.float32), np.sin(0.5 * np.pi * x).astype(np.float32)


class LiveLoop:
    """Runs a "live" job until it is cancelled (`/indie/live 0`, `/indie/cancel`, MIDI stop).

    Args:
        next_request: builds the Engine.stream arguments for the next chunk (prompt, length,
            tempo, melody of the current note, sampling parameters).
        melody_version: returns a number that changes whenever a note is played.
        last_note_time: returns the monotonic time of the last note played (or None).
    """

    def __init__(self, next_request: Callable[[], dict[str, Any]],
                 melody_version: Callable[[], int],
                 last_note_time: Callable[[], float | None]) -> None:
        self.next_request = next_request
        self.melody_version = melody_version
        self.last_note_time = last_note_time
        self.stats = LiveStats()

    def run(self, job: Job, worker) -> None:
        audio, engine = worker.audio, worker.engine
        fade_n = int(CROSSFADE_SECONDS * engine.sample_rate)
        fade_out, fade_in = equal_power(fade_n)
        worker.reply(job.reply_to, "/indie/started", job.job_id)
        audio.begin()
        tail: np.ndarray | None = None  # the previous chunk's last fade_n samples, held back
        context_n = int(CONTEXT_SECONDS * engine.sample_rate)
        history = np.zeros(0, np.float32)  # the last context_n samples queued to play
        measured = self.melody_version()
        try:
            while not job.cancel.is_set():
                version = self.melody_version()
                request = self.next_request()
                if len(history) >= context_n // 2:
                    request["continue_from"] = history
                self.stats.chunk_starts.append(time.monotonic())
                # The first chunk after a new note: time it from the note to its first block.
                note_time = self.last_note_time() if version != measured else None
                measured = version
                try:
                    stream = engine.stream(**request)
                except ValueError as error:  # e.g. a pattern the engine does not know
                    worker.reply(job.reply_to, "/indie/error", job.job_id, "bad_request",
                                 str(error))
                    job.cancel.set()
                    break
                restarted = False
                first = True
                pending = np.zeros(0, np.float32)
                try:
                    for block in stream:
                        if job.cancel.is_set():
                            break
                        if self.melody_version() != version:
                            restarted = True
                            break
                        pending = np.concatenate([pending, block])
                        if tail is not None:
                            if len(pending) < fade_n:
                                continue
                            pending[:fade_n] = tail * fade_out + pending[:fade_n] * fade_in
                            tail = None
                        if first and note_time is not None:
                            self.stats.note_to_chunk.append(time.monotonic() - note_time)
                        first = False
                        # Hold back the last fade_n samples: the next chunk fades in over them.
                        ready, pending = pending[:-fade_n], pending[-fade_n:]
                        history = np.concatenate([history, ready])[-context_n:]
                        if len(ready) and not audio.write(ready, stop=job.cancel):
                            break
                finally:  # also when the sound card goes away (AudioLost)
                    if hasattr(stream, "close"):
                        stream.close()
                self.stats.chunks += 1
                if restarted:
                    self.stats.restarts += 1
                    dropped = audio.restart(int(RESTART_HEADROOM_SECONDS * audio.rate))
                    tail = None
                    audio.fade_from(dropped)
                    # What was cut never plays: the next chunk continues what did.
                    cut = int(len(dropped) * engine.sample_rate / audio.rate)
                    history = history[:max(len(history) - cut, 0)]
                    continue
                tail = pending if len(pending) == fade_n else None
                if tail is None and len(pending):
                    audio.write(pending, stop=job.cancel)
        finally:
            audio.stop_now()
            job.cancel.set()  # over, whatever ended it: the session may start a new take
        worker.reply(job.reply_to, "/indie/cancelled", job.job_id, 0.0)
        worker.completed.append((job.job_id, "live stopped"))
