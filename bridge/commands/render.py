"""`indie render PRESET... [--variations N] [--out DIR] [--ray [ADDRESS]]`: batch-render presets
to files, in this process or as Ray tasks (bridge/ray_render.py)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

logger = logging.getLogger(__name__)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("render", help="render presets to WAV/FLAC files with "
                                   "JSON sidecars")
    parser.add_argument("presets", nargs="+", type=Path, metavar="PRESET",
                        help="preset YAML files (e.g. presets/*.yaml)")
    parser.add_argument("--variations", type=int,
                        help="variations per preset (default: the preset's 'variations')")
    parser.add_argument("--out", type=Path, default=Path("renders"), help="output folder")
    parser.add_argument("--codec", type=Path, help="codec weights (default: shipped)")
    parser.add_argument("--lm", type=Path, help="LM weights (default: shipped)")
    parser.add_argument("--threads", type=int, help="torch threads (per Ray worker: default 1)")
    parser.add_argument("--ray", nargs="?", const="", metavar="ADDRESS",
                        help="render the variations as Ray tasks: on a local cluster, or on the "
                             "running cluster at ADDRESS ('auto', 'ray://host:10001'); put it "
                             "after the presets (needs the [cluster] extra)")
    parser.add_argument("--workers", type=int,
                        help="CPUs of the local Ray cluster, one task each (default: all cores)")
    parser.add_argument("--retries", type=int, default=2,
                        help="extra attempts of a failed Ray task (default 2)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace, engine=None) -> int:
    from tqdm import tqdm

    from bridge.presets import load_preset_file
    from bridge.render import render_variation

    presets = [load_preset_file(path) for path in args.presets]  # every file checked first,
    for preset in presets:  # melody files too: a bad one stops the batch before any rendering
        preset.melody_notes()
    if args.variations is not None and args.variations < 1:
        print("indie: error: --variations must be at least 1", file=sys.stderr)
        return 2
    if getattr(args, "ray", None) is not None:
        return run_on_ray(args, presets)
    if engine is None:
        from engine.engine import Engine

        engine = Engine.load(args.codec, args.lm, threads=args.threads)
    jobs = [(preset, v) for preset in presets
            for v in range(args.variations or preset.variations)]
    with tqdm(total=len(jobs), unit="clip", dynamic_ncols=True) as bar:
        for preset, variation in jobs:
            bar.set_description(f"{preset.name} #{variation}")
            start = bar.n

            def progress(done: int, total: int, start=start) -> None:
                bar.n = start + done / max(total, 1)
                bar.refresh()

            path = render_variation(engine, preset, variation, args.out, progress)
            bar.n = start + 1
            bar.refresh()
            bar.write(str(path))
    print(f"rendered {len(jobs)} clip(s) to {args.out}")
    return 0


def run_on_ray(args: argparse.Namespace, presets: list) -> int:
    """The variations as Ray tasks; exit 1 when a variation failed after its retries."""
    if args.ray.endswith((".yaml", ".yml")):
        print(f"indie: error: --ray took {args.ray!r} as a cluster address: put --ray after the "
              "presets, or write --ray=ADDRESS", file=sys.stderr)
        return 2
    try:
        import ray  # noqa: F401
    except ImportError:
        print("indie: error: --ray needs Ray: pip install -e '.[cluster]'", file=sys.stderr)
        return 2
    from bridge.ray_render import EngineSource, RayRenderConfig, plan_jobs, render_on_ray

    jobs = plan_jobs(presets, args.variations)
    source = EngineSource(str(args.codec) if args.codec else None,
                          str(args.lm) if args.lm else None, args.threads or 1)
    config = RayRenderConfig(address=args.ray or None, workers=args.workers,
                             retries=args.retries)
    result = render_on_ray(jobs, args.out, source, config)
    print(f"rendered {len(result.paths)} clip(s) to {args.out} on Ray "
          f"({result.retries} retried task(s))")
    for label, reason in result.failures:
        print(f"indie: failed: {label}: {reason}", file=sys.stderr)
    return 1 if result.failures else 0
