"""`indie train codec`: train (or resume) a codec run from a YAML config."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from engine.config import load_config, replace_config

log = logging.getLogger(__name__)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("train", help="train a model (checkpoints often, resumes)")
    models = parser.add_subparsers(dest="model", metavar="MODEL", required=True)
    codec = models.add_parser("codec", help="the audio codec, with or without the MMD loss")
    codec.add_argument("--config", type=Path, required=True, help="YAML CodecTrainConfig")
    codec.add_argument("--run", dest="run_dir", type=Path, required=True,
                       help="run folder (checkpoints, logs)")
    codec.add_argument("--resume", action="store_true", help="continue the run in --run")
    codec.add_argument("--steps", type=int, help="override the number of steps")
    codec.add_argument("--dataset", help="override data.dataset")
    codec.set_defaults(run=run_codec)


def run_codec(args: argparse.Namespace) -> int:
    from engine.train.codec_trainer import CodecTrainConfig, train_codec

    config = load_config(CodecTrainConfig, args.config)
    overrides = {}
    if args.steps is not None:
        overrides["steps"] = args.steps
    if args.dataset:
        overrides["data.dataset"] = args.dataset
    config = replace_config(config, overrides, source="command line")

    def report(record: dict) -> None:
        shown = {k: v for k, v in record.items() if not k.startswith("vq/")}
        log.info(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                          for k, v in shown.items()))

    state = train_codec(config, args.run_dir, resume=args.resume, on_log=report)
    print(f"trained {args.run_dir} to step {state.step} in {state.train_seconds / 60:.1f} min")
    return 0
