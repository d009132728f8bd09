"""`indie render PRESET... [--variations N] [--out DIR]`: batch-render presets to files."""

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
    parser.add_argument("--threads", type=int, help="torch threads")
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
