"""Benchmark: how many times faster than real time the codec encodes and decodes on this CPU."""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable
from typing import NamedTuple

import torch

from engine.codec import Codec


class _Timing(NamedTuple):
    """Median seconds of one pass: wall clock, and CPU time of this process (all threads)."""

    wall: float
    cpu: float


def _median_seconds(fn: Callable[[], object], runs: int) -> _Timing:
    """Median wall and CPU time of `runs` calls of `fn`, after one untimed warm-up call.

    CPU time barely moves when other processes share the cores, so it tells a slow machine
    from a busy one; wall time is what a listener waits for.
    """
    fn()
    walls, cpus = [], []
    for _ in range(runs):
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return _Timing(statistics.median(walls), statistics.median(cpus))


def bench_codec_speed(codec: Codec, seconds: float = 10.0, threads: int | None = None,
                      runs: int = 5, stream_chunk: int = 1, seed: int = 0) -> dict:
    """Time encode, decode and streaming decode of `seconds` of noise, batch 1.

    Args:
        codec: the model (put in eval mode for the measurement, then restored).
        seconds: audio length per run.
        threads: torch intra-op threads for the run (None keeps the current setting).
        runs: timed runs per measurement; the median is reported.
        stream_chunk: frames per `StreamDecoder.step` call (1 is the bridge's worst case).
        seed: seed of the noise input.

    Returns:
        A JSON-ready dict: wall and CPU seconds per pass and "x_realtime" (audio seconds per
        wall second) for encode, decode, encode+decode and streaming decode, plus the 1-minute
        load average (above the core count, other processes were competing for the CPU).
    """
    previous_threads = torch.get_num_threads()
    was_training = codec.training
    if threads is not None:
        torch.set_num_threads(threads)
    codec.eval()
    try:
        generator = torch.Generator().manual_seed(seed)
        samples = int(seconds * codec.sample_rate)
        audio = 0.1 * torch.randn(1, codec.config.channels, samples, generator=generator)
        with torch.inference_mode():
            codes = codec.encode(audio)  # [1, K, T]
            encode_t = _median_seconds(lambda: codec.encode(audio), runs)
            decode_t = _median_seconds(lambda: codec.decode(codes), runs)
            stream_t = None
            if codec.config.causal:

                def stream() -> None:
                    decoder = codec.stream_decoder(1)
                    for start in range(0, codes.shape[-1], stream_chunk):
                        decoder.step(codes[..., start:start + stream_chunk])

                stream_t = _median_seconds(stream, runs)
    finally:
        torch.set_num_threads(previous_threads)
        codec.train(was_training)

    def speed(timing: _Timing | None) -> float | None:
        return None if timing is None else round(seconds / timing.wall, 1)

    def rounded(value: float | None) -> float | None:
        return None if value is None else round(value, 4)

    frames = codes.shape[-1]
    steps = -(-frames // stream_chunk)
    return {
        "benchmark": "codec_speed",
        "audio_seconds": seconds,
        "threads": threads if threads is not None else previous_threads,
        "runs": runs,
        "parameters": sum(p.numel() for p in codec.parameters()),
        "encode_seconds": rounded(encode_t.wall),
        "decode_seconds": rounded(decode_t.wall),
        "stream_decode_seconds": None if stream_t is None else rounded(stream_t.wall),
        "encode_cpu_seconds": rounded(encode_t.cpu),
        "decode_cpu_seconds": rounded(decode_t.cpu),
        "stream_decode_cpu_seconds": None if stream_t is None else rounded(stream_t.cpu),
        "encode_x_realtime": speed(encode_t),
        "decode_x_realtime": speed(decode_t),
        "encode_decode_x_realtime": round(seconds / (encode_t.wall + decode_t.wall), 1),
        "stream_decode_x_realtime": speed(stream_t),
        "stream_ms_per_step": None if stream_t is None else round(1000 * stream_t.wall / steps, 3),
        "stream_chunk_frames": stream_chunk,
        "load_average_1min": round(os.getloadavg()[0], 2),
        "cpu_count": os.cpu_count(),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "torch": torch.__version__,
    }
