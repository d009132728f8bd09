"""`indie train codec|lm`: train (or resume) a codec or LM run from a YAML config."""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

from engine.config import load_config, replace_config

log = logging.getLogger(__name__)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train", help="train a model (checkpoints often, resumes)",
        description="Train a model. `indie train codec|lm` also runs under `torchrun "
                    "--nproc-per-node N` (data parallel: data.batch_size is the global batch, "
                    "split over the N workers; rank 0 logs and checkpoints).")
    models = parser.add_subparsers(dest="model", metavar="MODEL", required=True)
    codec = models.add_parser("codec", help="the audio codec, with or without the MMD loss")
    codec.add_argument("--config", type=Path, required=True, help="YAML CodecTrainConfig")
    codec.add_argument("--run", dest="run_dir", type=Path, required=True,
                       help="run folder (checkpoints, logs)")
    codec.add_argument("--resume", action="store_true", help="continue the run in --run")
    codec.add_argument("--steps", type=int, help="override the number of steps")
    codec.add_argument("--fork", type=Path, metavar="RUN",
                       help="start --run from RUN's checkpoint: allowed while the independence "
                            "loss has not started (step <= independence.start_step)")
    codec.add_argument("--dataset", help="override data.dataset")
    codec.set_defaults(run=run_codec)

    lm = models.add_parser("lm", help="the language model, on a token cache "
                           "(`indie dataset tokenize`)")
    lm.add_argument("--config", type=Path, required=True, help="YAML LMTrainConfig")
    lm.add_argument("--run", dest="run_dir", type=Path, required=True,
                    help="run folder (checkpoints, logs)")
    lm.add_argument("--resume", action="store_true", help="continue the run in --run")
    lm.add_argument("--steps", type=int, help="override the number of steps")
    lm.add_argument("--tokens", help="override data.tokens (the token cache folder)")
    lm.add_argument("--device", help="override device (cpu, cuda)")
    lm.set_defaults(run=run_lm)

    tagger = models.add_parser("tagger", help="the evaluation tagger (CNN on log-mels)")
    tagger.add_argument("--dataset", type=Path, default=Path("data/indie-10h"))
    tagger.add_argument("--out", type=Path, required=True,
                        help="folder for tagger.safetensors + tagger.json")
    tagger.add_argument("--minutes", type=float, default=10.0, help="training wall-clock budget")
    tagger.add_argument("--steps", type=int, help="stop after this many steps")
    tagger.set_defaults(run=run_tagger)


def log_record(record: dict) -> None:
    """One training log record as a `key=value` line."""
    log.info(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                      for k, v in record.items()))


def report_end(run_dir: Path, state) -> None:
    """The closing line, once (by rank 0 under torchrun, which sets RANK)."""
    if os.environ.get("RANK", "0") == "0":
        print(f"trained {run_dir} to step {state.step} in {state.train_seconds / 60:.1f} min")


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
        log_record({k: v for k, v in record.items() if not k.startswith("vq/")})

    state = train_codec(config, args.run_dir, resume=args.resume, fork=args.fork,
                        on_log=report)
    report_end(args.run_dir, state)
    return 0


def run_lm(args: argparse.Namespace) -> int:
    from engine.train.lm_trainer import LMTrainConfig, train_lm

    config = load_config(LMTrainConfig, args.config)
    overrides = {}
    if args.steps is not None:
        overrides["steps"] = args.steps
    if args.tokens:
        overrides["data.tokens"] = args.tokens
    if args.device:
        overrides["device"] = args.device
    config = replace_config(config, overrides, source="command line")

    state = train_lm(config, args.run_dir, resume=args.resume, on_log=log_record)
    report_end(args.run_dir, state)
    return 0


def run_tagger(args: argparse.Namespace) -> int:
    from engine.train.tagger_trainer import TaggerTrainConfig, train_tagger

    config = TaggerTrainConfig(minutes=args.minutes, max_steps=args.steps)
    result = train_tagger(args.dataset, args.out, config, on_log=log_record)
    print(f"trained the tagger for {result['training']['steps']} steps: {args.out}")
    for split, scores in result["scores"].items():
        for head, s in scores.items():
            if isinstance(s, dict):
                print(f"{split} {head}: accuracy {s['accuracy']:.3f} "
                      f"(majority {s['majority']:.3f})")
    return 0
