"""`indie export codec|lm`: turn a training run into shippable safetensors + manifest."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("export", help="export a trained model for shipping")
    models = parser.add_subparsers(dest="model", metavar="MODEL", required=True)
    codec = models.add_parser("codec", help="a codec run's checkpoint → safetensors + manifest")
    codec.add_argument("--run", dest="run_dir", type=Path, required=True)
    codec.add_argument("--out", type=Path, required=True,
                       help="e.g. engine/weights/codec.safetensors")
    codec.add_argument("--eval", type=Path,
                       help="`indie eval codec` JSON to record in the manifest")
    codec.add_argument("--note", default="", help="a sentence on what this model is")
    codec.set_defaults(run=run_codec)
    add_lm_parser(models)


def run_codec(args: argparse.Namespace) -> int:
    from engine.weights import codec_from_checkpoint, export_codec, read_checkpoint

    checkpoint_path = args.run_dir / "checkpoint.pt"
    checkpoint = read_checkpoint(checkpoint_path)
    train_config = checkpoint["config"]
    provenance = {
        "note": args.note,
        "data": train_config["data"],
        "independence": train_config["independence"],
        "loss_weights": train_config["loss_weights"],
        "steps": checkpoint["step"],
        "train_minutes": round(checkpoint["train_seconds"] / 60, 1),
        "hardware": "2-core CPU, no GPU",
    }
    if args.eval:
        provenance["evaluation"] = json.loads(args.eval.read_text())
    codec = codec_from_checkpoint(checkpoint, source=str(checkpoint_path))
    path = export_codec(codec, args.out, provenance)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB) and its manifest")
    return 0


def add_lm_parser(models: argparse._SubParsersAction) -> None:
    lm = models.add_parser("lm", help="an LM run's checkpoint → safetensors + manifest")
    lm.add_argument("--run", dest="run_dir", type=Path, required=True)
    lm.add_argument("--out", type=Path, required=True, help="e.g. engine/weights/lm.safetensors")
    lm.add_argument("--half", action="store_true", help="store fp16 weights (half the size)")
    lm.add_argument("--codec", help="the codec weights whose tokens the LM was trained on")
    lm.add_argument("--note", default="", help="a sentence on what this model is")
    lm.set_defaults(run=run_lm)


def run_lm(args: argparse.Namespace) -> int:
    from engine.weights import export_lm, lm_from_checkpoint, read_checkpoint

    checkpoint_path = args.run_dir / "checkpoint.pt"
    checkpoint = read_checkpoint(checkpoint_path)
    train_config = checkpoint["config"]
    log_path = args.run_dir / "log.jsonl"
    valid = [r for r in (json.loads(line) for line in log_path.open()) if "valid/ce" in r] \
        if log_path.is_file() else []
    provenance = {
        "note": args.note,
        "codec": args.codec,
        "data": train_config["data"],
        "optim": train_config["optim"],
        "steps": checkpoint["step"],
        "train_minutes": round(checkpoint["train_seconds"] / 60, 1),
        "validation": {k: v for k, v in valid[-1].items() if k.startswith("valid/")}
        if valid else None,
    }
    lm = lm_from_checkpoint(checkpoint, source=str(checkpoint_path))
    path = export_lm(lm, args.out, provenance, half=args.half)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB) and its manifest")
    return 0
