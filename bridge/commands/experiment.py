"""`indie experiment independence`: baseline vs MMD codec × decoding patterns, end to end."""

from __future__ import annotations

import argparse
import shlex
import time
from pathlib import Path

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "experiments"
FULL_CONFIG = CONFIGS / "independence.yaml"
SMALL_CONFIG = CONFIGS / "independence-small.yaml"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("experiment", help="run an experiment that trains and "
                                   "compares several models; writes a report")
    experiments = parser.add_subparsers(dest="experiment", metavar="EXPERIMENT", required=True)
    independence = experiments.add_parser(
        "independence", help="codec (baseline, MMD) × pattern (parallel, delay, flatten, "
        "coarse_first): dependence, CE gap to flatten, quality, speed (resumable)")
    scale = independence.add_mutually_exclusive_group()
    scale.add_argument("--small", action="store_true",
                       help=f"a tiny scale that runs in minutes ({SMALL_CONFIG.name})")
    scale.add_argument("--config", type=Path,
                       help=f"YAML of IndependenceExperimentConfig (default: {FULL_CONFIG.name})")
    independence.add_argument("--out", type=Path,
                              help="where independence.md/.json and the plots go (default: "
                              "reports, or reports/small with --small)")
    independence.add_argument("--dataset", type=Path, help="a built dataset (overrides config)")
    independence.add_argument("--work", type=Path,
                              help="resumable work folder (default: runs/independence, or "
                              "runs/independence-small with --small)")
    independence.add_argument("--codec", action="append", default=[], metavar="NAME=PATH",
                              help="replace the codecs (repeat: baseline=a.safetensors "
                              "mmd=b.safetensors)")
    independence.add_argument("--tagger", type=Path, help="evaluation tagger weights")
    independence.set_defaults(run=run_independence_command)


def run_independence_command(args: argparse.Namespace) -> int:
    from engine.config import ConfigError, load_config, replace_config
    from engine.experiments.config import IndependenceExperimentConfig
    from engine.experiments.independence import run_independence

    path = SMALL_CONFIG if args.small else (args.config or FULL_CONFIG)
    config = load_config(IndependenceExperimentConfig, path)
    overrides: dict = {}
    if args.dataset:
        overrides["dataset"] = str(args.dataset)
    if args.codec:
        codecs = {}
        for item in args.codec:
            name, sep, weights = item.partition("=")
            if not sep or not name or not weights:
                raise ConfigError(f"--codec expects NAME=PATH, got {item!r}")
            codecs[name] = weights
        overrides["codecs"] = codecs
    if args.tagger:
        overrides["tagger"] = str(args.tagger)
    config = replace_config(config, overrides, source="command line")
    work = args.work or Path("runs/independence-small" if args.small else "runs/independence")
    args.out = args.out or Path("reports/small" if args.small else "reports")
    started = time.monotonic()
    result = run_independence(config, work, args.out, command=_rebuild(args),
                              progress=lambda line: print(line, flush=True))
    print(f"{len(result['arms'])} arms in {time.monotonic() - started:.0f} s; "
          f"report: {args.out / 'independence.md'}")
    return 0


def _rebuild(args: argparse.Namespace) -> str:
    """The command line that made this report, rebuilt from the parsed arguments."""
    parts = ["indie", "experiment", "independence"]
    if args.small:
        parts.append("--small")
    if args.config:
        parts += ["--config", str(args.config)]
    parts += ["--out", str(args.out)]
    for flag in ("dataset", "work", "tagger"):
        if getattr(args, flag):
            parts += [f"--{flag}", str(getattr(args, flag))]
    for codec in args.codec:
        parts += ["--codec", codec]
    return " ".join(shlex.quote(p) for p in parts)
