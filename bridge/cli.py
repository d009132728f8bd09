"""The `indie` command: one subcommand per job, each defined in `bridge.commands`."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Sequence

from bridge.commands import (
    bench,
    dataset,
    evaluate,
    experiment,
    export,
    generate,
    render,
    serve,
    train,
)
from engine import __version__
from engine.audio import AudioFileError
from engine.config import ConfigError
from engine.data.build import DatasetError
from engine.data.synth import SynthError
from engine.inputs import EngineError
from engine.weights import WeightsError

# Mistakes a user can fix: a message, not a traceback.
USER_ERRORS = (AudioFileError, ConfigError, DatasetError, SynthError, EngineError,
               WeightsError, FileNotFoundError)

COMMANDS = (generate, dataset, train, evaluate, export, bench, serve, render, experiment)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="indie",
        description="Offline text-and-melody-to-music on a CPU, driven from a DAW over OSC/MIDI.",
    )
    parser.add_argument("--version", action="version", version=f"indie {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in COMMANDS:
        command.add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # A terminated job unwinds like Ctrl-C: worker pools shut down, temporary files go away.
    signal.signal(signal.SIGTERM, _raise_interrupt)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.run(args)
    except USER_ERRORS as error:
        print(f"indie: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())
