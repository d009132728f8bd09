"""Jobs: one queued request to the engine, and what it leaves behind (a file and its sidecar).

A Job carries everything the worker needs, resolved when it was queued (settings snapshot,
seed, length, melody), so later `/indie/set` messages never change a job already waiting.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from engine import __version__
from engine.atomic import write_json_atomic
from engine.audio import write_audio

Address = tuple[str, int]


@dataclass
class Job:
    """A generation request.

    Args:
        job_id: the client's id or one the session made up ("j12").
        kind: "generate", "continue", "render" or "live".
        request: keyword arguments for Engine.stream (prompt, seconds or bars+bpm, seed, ...).
        reply_to: where replies about this job go.
        output: "stream", "file" or "both".
        format: "wav" or "flac".
        out_path: the file to write (None when output is "stream").
    """

    job_id: str
    kind: str
    request: dict[str, Any]
    reply_to: Address
    output: str = "both"
    format: str = "wav"
    out_path: Path | None = None
    cancel: threading.Event = field(default_factory=threading.Event)
    queued_at: float = field(default_factory=time.monotonic)
    started_at: float | None = None


class JobQueue:
    """A bounded FIFO of jobs; `put` raises queue.Full instead of waiting."""

    def __init__(self, maxsize: int) -> None:
        self._queue: queue.Queue[Job | None] = queue.Queue(maxsize)
        self._lock = threading.Lock()
        self._waiting: list[Job] = []

    def put(self, job: Job) -> None:
        with self._lock:
            self._queue.put_nowait(job)
            self._waiting.append(job)

    def get(self, timeout: float | None = None) -> Job | None:
        """The next job, or None (shutdown or timeout)."""
        try:
            job = self._queue.get(timeout=timeout)
        except queue.Empty:
            return None
        with self._lock:
            if job in self._waiting:
                self._waiting.remove(job)
        return job

    def wake(self) -> None:
        """Unblock a waiting `get` (shutdown)."""
        with contextlib.suppress(queue.Full):
            self._queue.put_nowait(None)

    def waiting(self) -> list[Job]:
        with self._lock:
            return list(self._waiting)

    def __len__(self) -> int:
        with self._lock:
            return len(self._waiting)


def sidecar(job: Job, seconds: float, sample_rate: int,
            params: dict[str, Any] | None = None) -> dict[str, Any]:
    """The JSON written beside a clip: every parameter, so the clip can be made again.

    Args:
        params: the engine's resolved parameters (GenerationStream.params); else the request.
    """
    source = params if params is not None else job.request
    request = {key: plain(value) for key, value in source.items() if key != "progress"}
    return {"job": job.job_id, "kind": job.kind, "seconds": round(seconds, 6),
            "sample_rate": sample_rate, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "indie_version": __version__, "params": request}


def write_clip(job: Job, audio: np.ndarray, sample_rate: int,
               params: dict[str, Any] | None = None) -> Path:
    """Write the job's clip and its sidecar; returns the audio path."""
    assert job.out_path is not None
    return write_with_sidecar(job.out_path, audio, sample_rate,
                              sidecar(job, len(audio) / sample_rate, sample_rate, params))


def write_with_sidecar(path: Path, audio: np.ndarray, sample_rate: int,
                       sidecar: dict[str, Any]) -> Path:
    """Write a clip, then its `.json` sidecar, each atomically; returns the audio path.

    A clip whose sidecar cannot be written (a full disk) is removed again: the folder only
    ever holds complete pairs.
    """
    write_audio(path, audio, sample_rate)
    try:
        write_json_atomic(path.with_suffix(".json"), sidecar)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path


def plain(value: Any) -> Any:
    """A parameter as JSON for a sidecar: paths as text, notes as [pitch, onset, offset], numpy
    scalars as numbers, audio arrays summarised."""
    if isinstance(value, dict):
        return {key: plain(v) for key, v in value.items()}
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, np.ndarray) and value.ndim:
        return f"<{len(value)} samples>"
    if isinstance(value, (np.ndarray, np.generic)):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value
