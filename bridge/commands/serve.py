"""`indie serve`: the OSC/MIDI server a DAW, Max or Pure Data drives."""

from __future__ import annotations

import argparse
import logging
import math
import sys
import threading
from pathlib import Path

from bridge.app import PRESETS_DIR, Bridge, BridgeOptions
from bridge.rate_limit import RateLimit

logger = logging.getLogger(__name__)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("serve", help="run the OSC/MIDI server (see the README's OSC "
                                   "table)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="interface to listen on (default loopback only)")
    parser.add_argument("--port", type=int, default=9000, help="OSC UDP port (default 9000)")
    parser.add_argument("--reply-port", type=int, default=9001,
                        help="replies go to the sender's host at this port (default 9001)")
    parser.add_argument("--out-dir", type=Path, default=Path("renders"),
                        help="where clips and sidecars are written (default renders/)")
    parser.add_argument("--in-dir", type=Path,
                        help="the only folder /indie/continue reads from (default: --out-dir)")
    parser.add_argument("--presets", type=Path, default=PRESETS_DIR,
                        help="the only folder presets load from")
    parser.add_argument("--midi-in", metavar="NAME", help="MIDI input port (name or part of it)")
    parser.add_argument("--midi-file", type=Path, help="play a MIDI file in as if from a port")
    parser.add_argument("--audio-device", metavar="NAME", help="sound card (default output)")
    parser.add_argument("--no-audio", action="store_true", help="files only, no sound card")
    parser.add_argument("--queue", type=int, default=8, help="jobs that may wait (default 8)")
    parser.add_argument("--rate-limit", type=_rate, default=RateLimit.rate, metavar="N",
                        help=f"OSC messages per second per sender, bursts of 2 N (default "
                             f"{RateLimit.rate:g}; 0: no limit)")
    parser.add_argument("--codec", type=Path, help="codec weights (default: shipped)")
    parser.add_argument("--lm", type=Path, help="LM weights (default: shipped)")
    parser.add_argument("--threads", type=int, help="torch threads")
    parser.set_defaults(run=run)


def _rate(text: str) -> float:
    rate = float(text)
    if not (math.isfinite(rate) and rate >= 0):
        raise argparse.ArgumentTypeError(f"expected messages per second >= 0, got {text}")
    return rate


def run(args: argparse.Namespace) -> int:
    from engine.engine import Engine

    if not args.no_audio:  # before the models load: a missing sound card is said at once
        from bridge.audio_out import check_output_device

        problem = check_output_device(args.audio_device)
        if problem:
            print(f"indie: error: no usable sound card ({problem}); pick one with "
                  "--audio-device, start JACK, or serve with --no-audio", file=sys.stderr)
            return 2
    engine = Engine.load(args.codec, args.lm, threads=args.threads)
    options = BridgeOptions(host=args.host, port=args.port, reply_port=args.reply_port,
                            out_dir=args.out_dir, in_dir=args.in_dir, presets_dir=args.presets,
                            audio=not args.no_audio, audio_device=args.audio_device,
                            midi_in=args.midi_in, midi_file=args.midi_file, queue_size=args.queue,
                            rate_limit=RateLimit.per_second(args.rate_limit))
    try:
        bridge = Bridge(engine, options)
    except OSError as error:  # the OSC port is taken
        print(f"indie: error: cannot listen on {args.host}:{args.port}: {error}", file=sys.stderr)
        return 2
    with bridge:
        print(f"indie serve: OSC on udp://{bridge.server.host}:{bridge.port}, replies to port "
              f"{args.reply_port}, files in {args.out_dir} (Ctrl-C stops)", flush=True)
        threading.Event().wait()  # until Ctrl-C / SIGTERM (KeyboardInterrupt)
    return 0
