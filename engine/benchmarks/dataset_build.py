"""Benchmark: wall time to build hours of training data on this machine."""

from __future__ import annotations

import os
import platform
import tempfile
import time
from pathlib import Path

from engine.data.build import DatasetConfig, build_dataset


def bench_dataset_build(hours: float = 1.0, workers: int | None = None, seed: int = 0,
                        out_dir: str | Path | None = None) -> dict:
    """Build `hours` of audio from scratch (a fresh folder) and report the wall time.

    The time covers everything a user waits for: listing the corpus, starting the workers,
    parsing, arranging, rendering with FluidSynth and writing FLAC clips and manifests.
    """
    workers = workers or os.cpu_count() or 1
    with tempfile.TemporaryDirectory(prefix="indie-bench-") as tmp:
        folder = Path(out_dir) if out_dir else Path(tmp) / "dataset"
        started = time.monotonic()
        report = build_dataset(folder, DatasetConfig(), seed, hours=hours, workers=workers)
        wall = time.monotonic() - started
    built_hours = report.summary["hours"]
    per_hour = wall / max(built_hours, 1e-9)
    return {
        "benchmark": "dataset_build",
        "hours_requested": hours,
        "hours_built": built_hours,
        "clips": report.summary["clips"],
        "pieces": report.summary["pieces"]["used"],
        "wall_seconds": round(wall, 1),
        "seconds_per_audio_hour": round(per_hour, 1),
        "x_realtime": round(3600 / per_hour, 1),
        "projected_minutes_for_10_hours": round(10 * per_hour / 60, 1),
        "workers": workers,
        "cpu_count": os.cpu_count(),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "python": platform.python_version(),
    }
