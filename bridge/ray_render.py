"""`indie render PRESET... --ray [ADDRESS]`: variations as Ray tasks on a local or running cluster.

Each task renders one variation in a Ray worker process and returns the clip; the driver writes
it into the output folder (atomically, audio then sidecar, bridge/render.py), so the workers
need no shared disk. A worker process loads the engine on its first task and keeps it for the
next ones (a cached global, keyed by the weights), so N workers load it N times, not once per
clip. Seeds and melodies are resolved on the driver, so a retried variation makes the same
file. A task that fails (an exception, a worker that died) is submitted again up to `retries`
times, each retry reported; a variation that still fails is reported at the end, never dropped.

Ray is an optional dependency: `pip install -e '.[cluster]'`.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bridge.presets import Preset
from bridge.render import RenderedClip, check_renderable, render_clip, save_clip, variation_seed
from engine.melody import Note


@dataclass(frozen=True)
class EngineSource:
    """The engine a worker loads: weights files (None: the shipped ones) and torch threads.

    Hashable: a worker process keeps one engine per source.
    """

    codec: str | None = None
    lm: str | None = None
    threads: int = 1

    def load(self) -> Any:
        from engine.engine import Engine

        return Engine.load(self.codec, self.lm, threads=self.threads)


@dataclass(frozen=True)
class RenderJob:
    """One variation to render, with everything resolved on the driver."""

    preset: Preset
    variation: int
    seed: int
    melody: tuple[Note, ...] = ()

    @property
    def label(self) -> str:
        return f"{self.preset.name} #{self.variation}"


@dataclass(frozen=True)
class RayRenderConfig:
    """Where the tasks run and how hard a failed one is retried.

    Args:
        address: None starts a local cluster; else `ray.init(address=...)` joins a running
            one ("auto", "ray://host:10001", ...).
        workers: CPUs of the local cluster (default: every core); each task takes one CPU.
        retries: extra attempts of a failed variation before it is reported failed.
    """

    address: str | None = None
    workers: int | None = None
    retries: int = 2


@dataclass
class RayRenderResult:
    """What came back: files written, variations that failed for good, retries, task timings."""

    paths: list[Path] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)  # (label, last error)
    retries: int = 0
    tasks: list[dict[str, float]] = field(default_factory=list)  # pid, load and render seconds


def plan_jobs(presets: Sequence[Preset], variations: int | None) -> list[RenderJob]:
    """Every variation of every preset, seeds drawn and melodies read here (on the driver)."""
    jobs = []
    for preset in presets:
        check_renderable(preset)
        melody = tuple(preset.melody_notes())
        for v in range(variations or preset.variations):
            jobs.append(RenderJob(preset, v, variation_seed(preset, v), melody))
    return jobs


_ENGINES: dict[Any, Any] = {}  # in each worker process: source -> its loaded engine


def render_task(source: Any, job: RenderJob) -> tuple[RenderedClip, dict[str, float]]:
    """Runs in a Ray worker: the clip, and this worker's pid, load and render seconds."""
    load_seconds = 0.0
    engine = _ENGINES.get(source)
    if engine is None:
        start = time.perf_counter()
        engine = _ENGINES[source] = source.load()
        load_seconds = time.perf_counter() - start
    start = time.perf_counter()
    clip = render_clip(engine, job.preset, job.variation, job.seed, melody=job.melody)
    return clip, {"pid": os.getpid(), "load_seconds": load_seconds,
                  "render_seconds": time.perf_counter() - start}


def render_on_ray(jobs: Sequence[RenderJob], out_dir: Path, source: Any,
                  config: RayRenderConfig | None = None) -> RayRenderResult:
    """Render `jobs` as Ray tasks and write each clip into `out_dir` as it arrives.

    Uses the Ray session already open in this process, if any (and leaves it open); else
    starts or joins the cluster of `config` and shuts the connection down at the end.

    Args:
        source: what each worker loads once (`EngineSource`, or any hashable, picklable object
            with a `load()` method that returns an engine).

    Returns:
        The files written and the variations that failed after every retry; the progress bar
        also announces each file, retry and failure as it happens.
    """
    import ray
    from tqdm import tqdm

    config = config or RayRenderConfig()
    started_here = not ray.is_initialized()
    if started_here:
        if config.address is None:
            ray.init(num_cpus=config.workers or os.cpu_count(), include_dashboard=False,
                     logging_level=logging.WARNING)
        else:
            ray.init(address=config.address, logging_level=logging.WARNING)
    # Ray's own retries are off: the driver retries, so that every retry is reported.
    task = ray.remote(num_cpus=1, max_retries=0)(render_task)
    result = RayRenderResult()
    pending: dict[Any, tuple[RenderJob, int]] = {}
    try:
        for job in jobs:
            pending[task.remote(source, job)] = (job, 1)
        with tqdm(total=len(jobs), unit="clip", dynamic_ncols=True) as bar:
            while pending:
                [ref], _ = ray.wait(list(pending), num_returns=1)
                job, attempt = pending.pop(ref)
                try:
                    clip, timing = ray.get(ref)
                except ray.exceptions.RayError as error:
                    reason = _reason(error)
                    if attempt <= config.retries:
                        bar.write(f"retrying {job.label} (attempt {attempt + 1} of "
                                  f"{config.retries + 1}): {reason}", file=sys.stderr)
                        result.retries += 1
                        pending[task.remote(source, job)] = (job, attempt + 1)
                    else:
                        bar.write(f"FAILED {job.label} after {attempt} attempts: {reason}",
                                  file=sys.stderr)
                        result.failures.append((job.label, reason))
                        bar.update(1)
                    continue
                path = save_clip(clip, out_dir)
                result.paths.append(path)
                result.tasks.append(timing)
                bar.update(1)
                bar.write(str(path))
    finally:
        for ref in pending:  # interrupted: nothing left running on the cluster
            ray.cancel(ref, force=True)
        if started_here:
            ray.shutdown()
    return result


def _reason(error: Exception) -> str:
    """One line on why a task failed: the worker's own exception when there is one."""
    cause = getattr(error, "cause", None)
    if isinstance(cause, BaseException):
        return f"{type(cause).__name__}: {cause}"
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0] if lines else ''}"
