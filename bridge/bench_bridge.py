"""`indie bench bridge`: the bridge's latencies measured through a real JACK server.

Starts a private JACK server (dummy backend), serves the engine on loopback, drives it over UDP
with a python-osc client and records the bridge's JACK output port with a JACK client:

- first audio: /indie/generate sent → first non-silent sample at the JACK port;
- cancel: /indie/cancel sent → /indie/cancelled received;
- live mode for N seconds: underruns, the samples of silence between chunks (at the ring buffer
  and as runs of zeros at the JACK port), and note → audio: /indie/melody/note sent → the first
  sample of the chunk conditioned on it handed to PortAudio, plus PortAudio's output latency.
"""

from __future__ import annotations

import logging
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bridge.reply_listener import ReplyListener

logger = logging.getLogger(__name__)

PROMPT = "a string quartet playing a slow and calm chorale in D minor"


def longest_zero_run(audio: np.ndarray) -> tuple[int, int]:
    """The longest run of exact zeros (silence written for missing samples) in `audio`.

    Returns:
        (length, start) in samples; (0, 0) when there is none.
    """
    zero = np.concatenate([[False], audio == 0.0, [False]])
    edges = np.flatnonzero(np.diff(zero.astype(np.int8)))
    if not len(edges):
        return 0, 0
    lengths = edges[1::2] - edges[::2]
    longest = int(np.argmax(lengths))
    return int(lengths[longest]), int(edges[::2][longest])


def bench_bridge(engine, stream_seconds: float = 60.0, repeats: int = 5,
                 chunk_seconds: float = 2.0, period: int = 256) -> dict[str, Any]:
    """Measure the bridge with `engine` (see the module docstring); returns plain numbers."""
    from pythonosc.udp_client import SimpleUDPClient

    from bridge.app import Bridge, BridgeOptions
    from bridge.jack_probe import JackRecorder, JackServer

    result: dict[str, Any] = {"engine": getattr(engine, "weights", {}) or "given",
                              "sample_rate": engine.sample_rate}
    with JackServer(48000, period) as jack, tempfile.TemporaryDirectory() as out:
        listener = ReplyListener()
        options = BridgeOptions(port=0, reply_port=listener.port, out_dir=Path(out),
                                audio=True, audio_device="system")
        bridge = Bridge(engine, options)
        recorder = JackRecorder("PortAudio:out_0", stream_seconds + 30, server=jack.name)
        client = SimpleUDPClient("127.0.0.1", bridge.port)
        try:
            result["jack"] = {"rate": jack.rate, "period": jack.period,
                              "portaudio_output_latency_ms": 1000 * bridge.audio.output_latency}
            result["first_audio_ms"] = _first_audio(client, listener, recorder, bridge, repeats)
            result["cancel_ack_ms"] = _cancel(client, listener, bridge, repeats)
            result["live"] = _live(client, listener, recorder, bridge, stream_seconds,
                                   chunk_seconds)
        finally:
            recorder.close()
            bridge.close()
            listener.close()
    return result


def _first_audio(client, listener, recorder, bridge, repeats: int) -> dict[str, Any]:
    times = []
    for index in range(repeats + 1):  # the first run warms up (text encoder, allocations)
        recorder.start()
        job = f"first{index}"
        sent = time.monotonic()
        client.send_message("/indie/generate", [PROMPT, 1.0, index, job])
        listener.wait("/indie/done", job)
        bridge.audio.ring.drain(10)
        time.sleep(0.05)
        if recorder.first_sound_time is None:
            raise RuntimeError("no sound reached the JACK port")
        times.append(1000 * (recorder.first_sound_time - sent))
    return {"cold": round(times[0], 1), "median": round(statistics.median(times[1:]), 1),
            "max": round(max(times[1:]), 1), "runs": [round(t, 1) for t in times[1:]]}


def _cancel(client, listener, bridge, repeats: int) -> dict[str, Any]:
    times = []
    for index in range(repeats):
        job = f"cancel{index}"
        seconds = min(20.0, bridge.session.engine.max_seconds)
        client.send_message("/indie/generate", [PROMPT, seconds, index, job])
        listener.wait("/indie/progress", job)
        time.sleep(0.2)
        sent = time.monotonic()
        client.send_message("/indie/cancel", [job])
        times.append(1000 * (listener.wait("/indie/cancelled", job) - sent))
        bridge.audio.ring.drain(5)
    return {"median": round(statistics.median(times), 1), "max": round(max(times), 1),
            "runs": [round(t, 1) for t in times]}


def _live(client, listener, recorder, bridge, seconds: float, chunk_seconds: float):
    audio, live = bridge.audio, bridge.session.live
    client.send_message("/indie/set", ["live_chunk_seconds", chunk_seconds])
    client.send_message("/indie/set", ["seed", 1])
    time.sleep(0.1)
    recorder.start()
    client.send_message("/indie/live", [1])
    started = time.monotonic()
    notes = []
    # A note every few seconds, from the middle of a chunk: each restarts generation.
    for index, when in enumerate(np.arange(chunk_seconds * 1.5, seconds - 2, 5.0)):
        time.sleep(max(0.0, started + when - time.monotonic()))
        marks = audio.restarts
        note_sent = time.monotonic()
        client.send_message("/indie/melody/note", [60 + 2 * (index % 6), 100])
        notes.append((note_sent, marks))
    time.sleep(max(0.0, started + seconds - time.monotonic()))
    stats = audio.stats()  # before stopping: the drain at the end is not an underrun
    # Where the recording is when live mode stops. JACK's dummy driver drops cycles that run
    # late (xruns), so the recording is shorter than the wall time: count samples, not seconds.
    recorded_until = recorder.written
    client.send_message("/indie/live", [0])
    time.sleep(0.3)
    latencies = []
    kept_from = audio.restarts - len(audio.restart_marks)  # restart number of restart_marks[0]
    for note_sent, before in notes:
        # The first restart after the note is the one it caused.
        if kept_from <= before < audio.restarts:
            played = audio.restart_marks[before - kept_from][1]
            if played is not None:
                latencies.append(1000 * (played - note_sent + audio.output_latency))
    recorded = recorder.audio()
    first = int(np.argmax(np.abs(recorded) > 1e-4))
    stop = recorded_until - recorder.rate // 10
    silence, where = longest_zero_run(recorded[first:stop])
    return {
        "seconds": seconds, "chunk_seconds": chunk_seconds, "chunks": live.stats.chunks,
        "restarts": live.stats.restarts, "underruns": stats.underruns,
        "underrun_samples": stats.underrun_samples,
        "longest_silence_at_port_samples": silence,
        "longest_silence_at_port_starts_s": round(where / recorder.rate, 3),
        "jack_xruns": recorder.xruns,
        "recorded_seconds": round((recorded_until - first) / recorder.rate, 2),
        "note_to_audio_ms": {"median": round(statistics.median(latencies), 1)
                             if latencies else None,
                             "max": round(max(latencies), 1) if latencies else None,
                             "runs": [round(x, 1) for x in latencies]},
        "note_to_first_block_ms": [round(1000 * x, 1) for x in live.stats.note_to_chunk],
    }
