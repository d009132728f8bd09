"""`indie bench ...`: benchmarks that print their numbers and write them as JSON."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from engine.atomic import write_json_atomic


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("bench", help="measure speed on this machine (prints JSON)")
    targets = parser.add_subparsers(dest="target", metavar="TARGET", required=True)

    dataset = targets.add_parser("dataset", help="time a fresh training-data build")
    dataset.add_argument("--hours", type=float, default=1.0, help="hours of audio to build")
    dataset.add_argument("--workers", type=int, help="rendering processes (default: all cores)")
    dataset.add_argument("--seed", type=int, default=0)
    dataset.add_argument("--json", type=Path, help="also write the result to this file")
    dataset.set_defaults(run=run_dataset)

    codec = targets.add_parser("codec", help="encode / decode / streaming-decode speed")
    codec.add_argument("--weights", type=Path, help="safetensors (default: the shipped codec)")
    codec.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    codec.add_argument("--seconds", type=float, default=10.0, help="audio length")
    codec.add_argument("--json", type=Path, help="also write the result to this file")
    codec.set_defaults(run=run_codec)


def run_dataset(args: argparse.Namespace) -> int:
    from engine.benchmarks.dataset_build import bench_dataset_build

    result = bench_dataset_build(args.hours, args.workers, args.seed)
    print(json.dumps(result, indent=2))
    if args.json:
        write_json_atomic(args.json, result)
    return 0


def run_codec(args: argparse.Namespace) -> int:
    from engine.benchmarks.codec_speed import bench_codec_speed
    from engine.weights import load_codec

    result = bench_codec_speed(load_codec(args.weights), args.seconds, args.threads)
    print(json.dumps(result, indent=2))
    if args.json:
        write_json_atomic(args.json, result)
    return 0
