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
    _add_output(dataset, run_dataset)

    codec = targets.add_parser("codec", help="encode / decode / streaming-decode speed")
    codec.add_argument("--weights", type=Path, help="safetensors (default: the shipped codec)")
    codec.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    codec.add_argument("--seconds", type=float, default=10.0, help="audio length")
    _add_output(codec, run_codec)

    generate = targets.add_parser("generate", help="generation speed of every decoding pattern")
    generate.add_argument("--seconds", type=float, default=5.0, help="audio per pattern")
    _add_weights(generate)
    generate.add_argument("--threads", type=int, help="torch threads while generating (default 1)")
    generate.add_argument("--cfg", type=float, default=3.0, help="guidance (1: no CFG rows)")
    _add_output(generate, run_generate)

    bridge = targets.add_parser("bridge", help="first audio, underruns, live gaps, cancel and "
                                "note latency through a private JACK server")
    bridge.add_argument("--seconds", type=float, default=60.0, help="live streaming to measure")
    bridge.add_argument("--repeats", type=int, default=5, help="runs per latency")
    bridge.add_argument("--chunk-seconds", type=float, default=2.0, help="live chunk length")
    bridge.add_argument("--period", type=int, default=256, help="JACK frames per period")
    _add_weights(bridge)
    bridge.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    _add_output(bridge, run_bridge)

    fuzz = targets.add_parser("fuzz", help="malformed OSC datagrams at a real `indie serve`: "
                              "crashes, replies, memory and threads")
    fuzz.add_argument("--packets", type=int, default=100_000, help="datagrams to send")
    fuzz.add_argument("--seed", type=int, default=0, help="the generator's seed")
    fuzz.add_argument("--rate-limit", type=float, default=0.0,
                      help="the server's --rate-limit (default 0: off, every datagram parsed)")
    _add_weights(fuzz)
    _add_output(fuzz, run_fuzz)

    soak = targets.add_parser("soak", help="clients generate, cancel and play live for minutes "
                              "through a private JACK server: crashes, leaks, replies, underruns")
    soak.add_argument("--minutes", type=float, default=10.0, help="how long (default 10)")
    soak.add_argument("--clients", type=int, default=3, help="concurrent clients (default 3)")
    soak.add_argument("--seed", type=int, default=0)
    soak.add_argument("--mix", default="generate=4,cancel=3,live=2,status=2",
                      help="relative weights of the clients' actions")
    _add_weights(soak)
    soak.add_argument("--threads", type=int, help="torch threads (default 1)")
    _add_output(soak, run_soak)

    render = targets.add_parser("render", help="render throughput: one process, then 1, 2, ... "
                                "local Ray workers (the [cluster] extra)")
    render.add_argument("--workers", default="1,2", help="Ray worker counts (default 1,2)")
    render.add_argument("--variations", type=int, default=8, help="clips per run (default 8)")
    render.add_argument("--seconds", type=float, default=4.0, help="seconds per clip (default 4)")
    render.add_argument("--preset", type=Path, default=Path("presets/church-organ.yaml"))
    _add_weights(render)
    render.add_argument("--note", default="", help="a remark stored with the results")
    _add_output(render, run_render)


def _add_weights(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--codec", type=Path, help="codec safetensors (default: shipped)")
    parser.add_argument("--lm", type=Path, help="LM safetensors (default: shipped)")


def _add_output(parser: argparse.ArgumentParser, run) -> None:
    parser.add_argument("--json", type=Path, help="also write the result to this file")
    parser.set_defaults(run=run)


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


def run_generate(args: argparse.Namespace) -> int:
    from engine.benchmarks.generate_speed import bench_generate_speed, format_table
    from engine.engine import Engine

    engine = Engine.load(args.codec, args.lm, threads=args.threads)
    result = bench_generate_speed(engine, args.seconds, cfg=args.cfg)
    print(format_table(result))
    if args.json:
        write_json_atomic(args.json, result)
    return 0


def run_bridge(args: argparse.Namespace) -> int:
    from bridge.bench_bridge import bench_bridge
    from engine.engine import Engine

    engine = Engine.load(args.codec, args.lm, threads=args.threads)
    result = bench_bridge(engine, args.seconds, args.repeats, args.chunk_seconds, args.period)
    print(json.dumps(result, indent=2))
    if args.json:
        write_json_atomic(args.json, result)
    return 0


def run_fuzz(args: argparse.Namespace) -> int:
    from bridge.bench_fuzz import FuzzConfig, bench_fuzz

    weights = [*(["--codec", str(args.codec)] if args.codec else []),
               *(["--lm", str(args.lm)] if args.lm else [])]
    result = bench_fuzz(FuzzConfig(packets=args.packets, seed=args.seed,
                                   rate_limit=args.rate_limit, serve_args=tuple(weights)))
    print(json.dumps(result, indent=2))
    if args.json:
        write_json_atomic(args.json, result)
    return 0 if not result["crashed"] and result["answered_ping_after"] else 1


def run_soak(args: argparse.Namespace) -> int:
    from bridge.bench_soak import SoakConfig, bench_soak
    from engine.engine import Engine

    engine = Engine.load(args.codec, args.lm, threads=args.threads)
    mix = tuple((name, float(weight)) for name, weight in
                (part.split("=") for part in args.mix.split(",")))
    config = SoakConfig(seconds=60 * args.minutes, clients=args.clients, seed=args.seed,
                        warmup_seconds=min(60.0, 15 * args.minutes), mix=mix)
    result = bench_soak(engine, config)
    print(json.dumps({k: v for k, v in result.items() if k != "samples"}, indent=2))
    if args.json:
        write_json_atomic(args.json, result)
    return 0 if result["passed"] else 1


def run_render(args: argparse.Namespace) -> int:
    from bridge.bench_render import RenderBenchConfig, bench_render

    config = RenderBenchConfig(args.preset, args.variations, args.seconds,
                               tuple(int(w) for w in args.workers.split(",")),
                               str(args.codec) if args.codec else None,
                               str(args.lm) if args.lm else None, args.note)
    result = bench_render(config)
    print(json.dumps(result, indent=2))
    if args.json:
        write_json_atomic(args.json, result)
    return 0
