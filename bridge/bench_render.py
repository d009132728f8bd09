"""`indie bench render`: render throughput in one process and on 1, 2, ... local Ray workers.

The same variations (same seeds) are rendered each way; the numbers are audio seconds per wall
second and clips per minute. The single process loads its engine before the clock starts
(`load_seconds` apart): its rate is one core's steady rate. Each Ray run starts a fresh local
cluster with that many CPUs (its start is timed apart) and its wall time counts every worker's
engine load, as a user of `indie render --ray` waits for it too; `after_load` leaves out the
slowest worker's load (the workers load at the same time, at the start). The load average
before and after is recorded: other work on the machine takes cores from the workers.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bridge.presets import load_preset_file
from bridge.ray_render import EngineSource, RayRenderConfig, plan_jobs, render_on_ray
from bridge.render import render_clip, save_clip


@dataclass(frozen=True)
class RenderBenchConfig:
    """What to render and on how many Ray workers.

    Args:
        preset: a preset file; its clips are cut to `seconds` (bars are dropped).
        variations: clips per run (seeds preset.seed + v; 0 + v when the preset is unseeded).
        seconds: length of each clip.
        workers: the local Ray cluster sizes to measure, one run each.
        codec, lm: weights files (None: shipped).
        note: a free-form remark stored with the machine's state.
    """

    preset: Path = Path("presets/church-organ.yaml")
    variations: int = 8
    seconds: float = 4.0
    workers: tuple[int, ...] = (1, 2)
    codec: str | None = None
    lm: str | None = None
    note: str = ""


def _rates(audio_seconds: float, clips: int, wall: float) -> dict[str, float]:
    return {"wall_seconds": round(wall, 2),
            "audio_seconds_per_second": round(audio_seconds / wall, 3),
            "clips_per_minute": round(60 * clips / wall, 2)}


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def bench_render(config: RenderBenchConfig) -> dict[str, Any]:
    """Measure, and return the numbers as a JSON-ready dict."""
    import ray

    preset = load_preset_file(config.preset)
    preset = dataclasses.replace(preset, seconds=config.seconds, bars=None,
                                 seed=max(preset.seed, 0))
    jobs = plan_jobs([preset], config.variations)
    audio_seconds = config.seconds * len(jobs)
    source = EngineSource(config.codec, config.lm, threads=1)
    cpus = os.cpu_count() or 1
    before = os.getloadavg()
    result: dict[str, Any] = {
        "preset": str(config.preset), "variations": len(jobs), "clip_seconds": config.seconds,
        "audio_seconds": audio_seconds, "engine_threads": 1,
    }
    with tempfile.TemporaryDirectory() as tmp:
        single_dir = Path(tmp) / "single"
        start = time.perf_counter()
        engine = source.load()
        load_seconds = time.perf_counter() - start
        start, per_clip = time.perf_counter(), []
        for job in jobs:
            clip_start = time.perf_counter()
            save_clip(render_clip(engine, job.preset, job.variation, job.seed,
                                  melody=job.melody), single_dir)
            per_clip.append(time.perf_counter() - clip_start)
        result["single_process"] = {
            "load_seconds": round(load_seconds, 2),
            **_rates(audio_seconds, len(jobs), time.perf_counter() - start),
            "per_clip_render_seconds": round(statistics.mean(per_clip), 3)}
        del engine
        expected = _files(single_dir)

        result["ray"] = []
        for workers in config.workers:
            out = Path(tmp) / f"ray-{workers}"
            start = time.perf_counter()
            ray.init(num_cpus=workers, include_dashboard=False, logging_level=logging.WARNING)
            try:
                cluster_seconds = time.perf_counter() - start
                start = time.perf_counter()
                run = render_on_ray(jobs, out, source, RayRenderConfig(workers=workers))
                wall = time.perf_counter() - start
            finally:
                ray.shutdown()
            loads = [t["load_seconds"] for t in run.tasks if t["load_seconds"] > 0]
            result["ray"].append({
                "workers": workers,
                "cluster_start_seconds": round(cluster_seconds, 2),
                **_rates(audio_seconds, len(run.paths), wall),
                "worker_processes": len({t["pid"] for t in run.tasks}),
                "engine_load_seconds": [round(s, 2) for s in loads],
                "after_load": _rates(audio_seconds, len(run.paths), wall - max(loads, default=0)),
                "per_clip_render_seconds": round(
                    statistics.mean(t["render_seconds"] for t in run.tasks), 3),
                "failed": len(run.failures),
                "identical_to_single_process": _files(out) == expected,
            })
    single = result["single_process"]["audio_seconds_per_second"]
    for numbers in result["ray"]:
        numbers["speedup_vs_single_process"] = round(
            numbers["audio_seconds_per_second"] / single, 2)
    after = os.getloadavg()
    result["machine"] = {"cpus": cpus, "loadavg_before": [round(v, 2) for v in before],
                         "loadavg_after": [round(v, 2) for v in after],
                         "note": _load_note(before[0], cpus, config.note)}
    return result


def _load_note(load: float, cpus: int, note: str) -> str:
    """Say when other work held cores before the run (its numbers then understate Ray's)."""
    words = []
    if load >= 0.5:
        words.append(f"1-minute load average {load:.2f} on {cpus} cores before the run: other "
                     "work was using cores, so runs with more workers than free cores were "
                     "contended and understate the speed-up")
    if note:
        words.append(note)
    return "; ".join(words)
