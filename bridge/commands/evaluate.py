"""`indie eval codec|lm`: the codec on held-out clips; the LM's music on test captions."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from engine.atomic import write_json_atomic


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("eval", help="evaluate a model; prints and writes JSON")
    models = parser.add_subparsers(dest="model", metavar="MODEL", required=True)
    codec = models.add_parser("codec", help="the codec on the test split")
    codec.add_argument("--weights", type=Path, help="safetensors file (default: shipped codec)")
    codec.add_argument("--checkpoint", type=Path, help="or a run's checkpoint.pt")
    codec.add_argument("--dataset", type=Path, default=Path("data/indie-10h"))
    codec.add_argument("--split", default="test", choices=("train", "valid", "test"))
    codec.add_argument("--max-clips", type=int, help="evaluate the first clips only")
    codec.add_argument("--no-speed", action="store_true", help="skip the speed measurement")
    codec.add_argument("--json", type=Path, required=True, help="write the results here")
    codec.add_argument("--plots", type=Path, help="write PNG plots (MI, spectrograms) here")
    codec.add_argument("--name", default="codec", help="this codec's name in the plots")
    codec.add_argument("--baseline", type=Path,
                       help="another codec's result JSON, shown beside this one in the MI plot")
    codec.set_defaults(run=run_codec)

    lm = models.add_parser("lm", help="generated music on test captions: FD, KL, text, melody "
                           "and tempo adherence, beside real clips and an untrained LM")
    lm.add_argument("--codec", type=Path, help="codec safetensors (default: shipped)")
    lm.add_argument("--lm", type=Path, help="LM safetensors (default: shipped)")
    lm.add_argument("--tagger", type=Path, help="tagger safetensors (default: shipped)")
    lm.add_argument("--dataset", type=Path, default=Path("data/indie-10h"))
    lm.add_argument("--clips", type=int, default=32, help="test captions (N clips per set)")
    lm.add_argument("--seconds", type=float, default=8.0, help="length of every clip")
    lm.add_argument("--seed", type=int, default=0)
    lm.add_argument("--no-pitch", action="store_true", help="skip torchcrepe pitch accuracy")
    lm.add_argument("--json", type=Path, required=True, help="write the results here")
    lm.set_defaults(run=run_lm)


def run_codec(args: argparse.Namespace) -> int:
    from engine.evaluation.codec_eval import evaluate_codec
    from engine.weights import load_codec, load_codec_checkpoint

    codec = load_codec_checkpoint(args.checkpoint) if args.checkpoint else load_codec(
        args.weights)
    result = evaluate_codec(codec, args.dataset / f"{args.split}.jsonl",
                            max_clips=args.max_clips, speed=not args.no_speed)
    result["weights"] = str(args.checkpoint or args.weights or "shipped default")
    result["name"] = args.name
    write_json_atomic(args.json, result)
    if args.plots:
        _plot(args, codec, result)
    brief = {k: v for k, v in result.items() if k not in ("mi_same_frame", "mi_delay_aligned")}
    brief["mi_same_frame"] = result["mi_same_frame"]["mean_normalised"]
    brief["mi_delay_aligned"] = result["mi_delay_aligned"]["mean_normalised"]
    print(json.dumps(brief, indent=2))
    return 0


def run_lm(args: argparse.Namespace) -> int:
    from engine.engine import Engine
    from engine.evaluation.lm_eval import LMEvalConfig, evaluate_lm
    from engine.evaluation.tagger import DEFAULT_TAGGER, load_tagger

    engine = Engine.load(args.codec, args.lm)
    config = LMEvalConfig(clips=args.clips, seconds=args.seconds, seed=args.seed,
                          pitch=not args.no_pitch)
    result = evaluate_lm(engine, load_tagger(args.tagger), args.dataset / "test.jsonl", config,
                         on_progress=lambda name, done, total: print(
                             f"\r{name}: {done}/{total}", end="\n" if done == total else "",
                             flush=True))
    result["weights"] = {**engine.weights, "tagger": str(args.tagger or DEFAULT_TAGGER)}
    write_json_atomic(args.json, result)
    print(json.dumps({name: {"fd": s["fd"], "kl": s["kl"]["mean"],
                             "text": s["text_adherence"]["all"],
                             "chroma": s["melody"]["chroma_similarity"],
                             "tempo": s["tempo"]["strict"]}
                      for name, s in result["sets"].items()}, indent=2))
    return 0


def _plot(args: argparse.Namespace, codec, result: dict) -> None:
    from engine.audio import read_audio
    from engine.data.manifest import audio_path, read_manifest
    from engine.evaluation.codec_eval import plot_mi_heatmaps, plot_spectrograms

    args.plots.mkdir(parents=True, exist_ok=True)
    results = {}
    if args.baseline:
        baseline = json.loads(args.baseline.read_text())
        results[baseline.get("name", "baseline")] = baseline
    results[args.name] = result
    plot_mi_heatmaps(results, args.plots / f"mi-{args.name}.png")
    manifest = args.dataset / f"{args.split}.jsonl"
    row = read_manifest(manifest)[0]
    audio = read_audio(audio_path(manifest, row), codec.sample_rate)[None, :, : 5 * 32000]
    plot_spectrograms({args.name: codec}, audio, args.plots / f"spectrogram-{args.name}.png")
