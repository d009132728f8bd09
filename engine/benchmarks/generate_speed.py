"""Benchmark: generation speed of every decoding pattern, against the memory-bandwidth bound.

For each pattern the engine streams one clip exactly as the bridge does (text encoding, LM steps
with guidance, streaming codec decode) and we time it: steps, ms per step, steps/s, real-time
factor (audio seconds / wall seconds, everything included), first-audio latency (call → first
block) and peak resident memory.

A decode step of a small LM at batch 2 is bound by memory traffic, not arithmetic: every weight
that the step uses is read once per step. Those bytes are counted exactly (every parameter a
torch function receives during one `lm.step`, embedding tables by the rows gathered), the KV
cache and cross-attention keys/values (the generation state) beside them, and divided by the
bandwidth of copying a 256 MB tensor on this machine: the fastest a step could possibly be.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import resource
import statistics
import time
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_leaves

from engine.conditioning import Conditions
from engine.engine import Engine
from engine.patterns import PATTERNS

DEFAULT_PROMPT = "a gentle solo piano piece in C major, 100 BPM, 4/4 time"


class StepBytes(NamedTuple):
    """Bytes one decode step reads: weights it uses, and the generation state."""

    weights: int  # parameters read by one lm.step (embedding tables: gathered rows only)
    state: int  # every tensor of the state (KV cache, cross-attention K/V): what a
    # static-shape cache reads each step; one that reads only its filled part reads less


class _ParameterReads(TorchFunctionMode):
    """Records the parameters that torch functions receive while active."""

    def __init__(self, parameters: dict[int, Tensor]) -> None:
        super().__init__()
        self.parameters = parameters  # storage address -> parameter
        self.bytes: dict[int, int] = {}  # storage address -> bytes read

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.embedding or func is torch.embedding:
            indices, table = (args[0], args[1]) if func is F.embedding else (args[1], args[0])
            key = _storage(table)
            if key in self.parameters:
                row = table.shape[-1] * table.element_size()
                self.bytes[key] = self.bytes.get(key, 0) + indices.numel() * row
        else:
            for leaf in tree_leaves((args, kwargs)):
                # Any view of a parameter (a transpose, a slice of a fused matrix) reads from it.
                if isinstance(leaf, Tensor) and _storage(leaf) in self.parameters:
                    self.bytes[_storage(leaf)] = self.parameters[_storage(leaf)].nbytes
        return func(*args, **kwargs)


def measure_step_bytes(engine: Engine, prompt: str = DEFAULT_PROMPT, cfg: float = 3.0,
                       max_steps: int = 64) -> StepBytes:
    """Count the bytes one guided decode step of the engine's LM reads (batch 1, 2 rows)."""
    lm = engine.lm
    k, special = lm.config.num_codebooks, lm.config.codebook_size
    embeddings, mask = engine.text_encoder.encode([prompt])
    conditions = Conditions(text=embeddings, text_mask=mask,
                            melody=torch.zeros(1, 12, max_steps), bpm=torch.tensor([100.0]),
                            beat_offset=torch.tensor([0.0]))
    rows = Conditions.cat([conditions, Conditions.null_like(conditions)]) if cfg != 1.0 \
        else conditions
    start = torch.full((rows.bpm.shape[0], k, 1), special, dtype=torch.long)  # [2, K, 1]
    parameters = {_storage(p): p for p in lm.parameters()}
    with torch.inference_mode():
        state = lm.start(rows, max_steps)
        lm.step(state, start)  # the first step may set things up; measure the second
        with _ParameterReads(parameters) as reads:
            lm.step(state, start)
    return StepBytes(sum(reads.bytes.values()), _tensor_bytes(state))


def measure_copy_bandwidth(megabytes: int = 256, runs: int = 5) -> float:
    """Memory traffic of copying a `megabytes` tensor, bytes/s (bytes read + bytes written)."""
    source = torch.ones(megabytes * 2**20 // 4)  # float32
    target = torch.empty_like(source)
    target.copy_(source)  # fault the pages in
    times = []
    for _ in range(runs):
        begin = time.perf_counter()
        target.copy_(source)
        times.append(time.perf_counter() - begin)
    return 2 * source.nbytes / statistics.median(times)


def bench_generate_speed(engine: Engine, seconds: float = 5.0, prompt: str = DEFAULT_PROMPT,
                         seed: int = 0, cfg: float = 3.0) -> dict[str, Any]:
    """Stream one clip per pattern and time it; compare with the bandwidth bound.

    Args:
        engine: a loaded engine (its threads setting is used).
        seconds: audio per pattern (cut to a pattern's maximum when longer; flatten takes K
            steps per frame).
        prompt: the prompt; each pattern gets " (take N)" appended so its text encoding is
            timed too, as for a new prompt from the bridge.
        seed, cfg: sampling seed and guidance (cfg 1 runs half the rows).

    Returns:
        A JSON-ready dict: per-pattern timings, the bound, and the machine.
    """
    threads = torch.get_num_threads()
    if engine.threads is not None:
        torch.set_num_threads(engine.threads)
    try:
        bandwidth = measure_copy_bandwidth()
        weight_bytes = measure_step_bytes(engine, prompt, cfg).weights
    finally:
        torch.set_num_threads(threads)
    bound_weights = bandwidth / weight_bytes

    patterns = {}
    for take, name in enumerate(PATTERNS):
        length = min(seconds, engine.max_seconds_for(name))
        engine.generate(prompt, seconds=min(0.2, length), pattern=name, seed=seed, cfg=cfg)
        result = _time_pattern(engine, f"{prompt} (take {take})", length, name, seed, cfg)
        # The cache is allocated for this pattern's steps; a static-shape cache reads it all.
        state = measure_step_bytes(engine, prompt, cfg, max_steps=result["steps"]).state
        result["fraction_of_bound"] = round(result["steps_per_s"] / bound_weights, 3)
        result["state_bytes"] = state
        result["bound_steps_per_s_with_state"] = round(bandwidth / (weight_bytes + state), 1)
        patterns[name] = result
    ratio = None
    if "parallel" in patterns and "flatten" in patterns:
        # Per second of audio: flatten may be capped to a shorter clip by the LM's max_steps.
        per_second = {name: patterns[name]["wall_s"] / patterns[name]["audio_s"]
                      for name in ("flatten", "parallel")}
        ratio = round(per_second["flatten"] / per_second["parallel"], 2)
    return {
        "benchmark": "generate_speed",
        "audio_seconds": seconds,
        "cfg": cfg,
        "threads": engine.threads if engine.threads is not None else threads,
        "lm_parameters": sum(p.numel() for p in engine.lm.parameters()),
        "lm_config": dataclasses.asdict(engine.lm.config),
        "weight_bytes_per_step": weight_bytes,
        "copy_bandwidth_gb_s": round(bandwidth / 1e9, 2),
        "bound_steps_per_s": round(bound_weights, 1),
        "patterns": patterns,
        "flatten_over_parallel_wall": ratio,
        "peak_rss_mb": _peak_rss_mb(),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "cpu_count": os.cpu_count(),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "torch": torch.__version__,
    }


def _time_pattern(engine: Engine, prompt: str, seconds: float, pattern: str, seed: int,
                  cfg: float) -> dict[str, Any]:
    """Stream one clip and time it."""
    steps = [0]

    def progress(done: int, total: int) -> None:
        steps[0] = total

    samples, first = 0, None
    begin, cpu = time.perf_counter(), time.process_time()
    for block in engine.stream(prompt, seconds=seconds, pattern=pattern, seed=seed, cfg=cfg,
                               progress=progress):
        if first is None:
            first = time.perf_counter() - begin
        samples += len(block)
    wall, cpu = time.perf_counter() - begin, time.process_time() - cpu
    audio = samples / engine.sample_rate
    return {
        "audio_s": round(audio, 3),
        "steps": steps[0],
        "wall_s": round(wall, 3),
        "cpu_s": round(cpu, 3),
        "ms_per_step": round(1000 * wall / steps[0], 3),
        "steps_per_s": round(steps[0] / wall, 1),
        "x_realtime": round(audio / wall, 2),
        "first_audio_ms": round(1000 * first, 1),
        "peak_rss_mb": _peak_rss_mb(),
    }


def _tensor_bytes(obj: Any, seen: set[int] | None = None) -> int:
    """Bytes of the distinct tensors inside an object (dataclass, mapping, sequence, attrs)."""
    seen = set() if seen is None else seen
    if isinstance(obj, Tensor):
        if obj.data_ptr() in seen:
            return 0
        seen.add(obj.data_ptr())
        return obj.untyped_storage().nbytes()
    if id(obj) in seen or isinstance(obj, (str, bytes, int, float, bool, type(None))):
        return 0
    seen.add(id(obj))
    if isinstance(obj, dict):
        children = list(obj.values())
    elif isinstance(obj, (list, tuple, set)):
        children = list(obj)
    elif isinstance(obj, torch.nn.Module):  # a model the state points to is not state
        return 0
    else:
        children = list(getattr(obj, "__dict__", {}).values())
        children += [getattr(obj, s) for s in getattr(type(obj), "__slots__", ())
                     if hasattr(obj, s)]
    return sum(_tensor_bytes(child, seen) for child in children)


def _storage(tensor: Tensor) -> int:
    """The address of a tensor's storage, shared by all its views."""
    return tensor.untyped_storage().data_ptr()


def _peak_rss_mb() -> float:
    """Peak resident memory of this process so far, MB (Linux reports KiB)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def format_table(result: dict[str, Any]) -> str:
    """The per-pattern numbers as an aligned text table, with the bound under it."""
    header = ("pattern", "steps", "ms/step", "steps/s", "x realtime", "first ms", "of bound",
              "state MB")
    rows = [header]
    for name, r in result["patterns"].items():
        rows.append((name, str(r["steps"]), f"{r['ms_per_step']:.2f}", f"{r['steps_per_s']:.1f}",
                     f"{r['x_realtime']:.2f}", f"{r['first_audio_ms']:.0f}",
                     f"{100 * r['fraction_of_bound']:.0f}%", f"{r['state_bytes'] / 1e6:.1f}"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.rjust(w) for cell, w in zip(row, widths, strict=True))
             for row in rows]
    lines.append(f"bound: {result['weight_bytes_per_step'] / 1e6:.1f} MB of weights per step "
                 f"at {result['copy_bandwidth_gb_s']} GB/s copy bandwidth = "
                 f"{result['bound_steps_per_s']} steps/s (the KV cache, 'state MB', adds to it); "
                 f"peak RSS {result['peak_rss_mb']} MB; flatten/parallel wall per audio second "
                 f"{result['flatten_over_parallel_wall']}x")
    return "\n".join(lines)
