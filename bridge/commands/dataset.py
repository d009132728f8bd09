"""`indie dataset build|info|tokenize`: make the training data, show what a dataset holds,
or encode it once with the codec for LM training."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from engine.config import load_config, replace_config
from engine.data.build import BuildReport, DatasetConfig, PieceResult, build_dataset


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("dataset", help="build the training data from the music21 "
                                   "corpus with FluidSynth, or show a dataset's summary")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    build = actions.add_parser(
        "build", help="render captioned clips (resumes an interrupted build in the same folder)")
    build.add_argument("--out", required=True, type=Path, help="dataset folder")
    amount = build.add_mutually_exclusive_group()
    amount.add_argument("--hours", type=float, help="stop at this many hours of audio")
    amount.add_argument("--limit", type=int, help="stop after this many pieces")
    build.add_argument("--seed", type=int, default=0, help="decides order, splits, arrangements")
    build.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                       help="rendering processes (default: one per core)")
    build.add_argument("--config", type=Path, help="YAML file of DatasetConfig fields")
    build.add_argument("--clip-seconds", type=float, help="clip length (default 10)")
    build.add_argument("--sources", help="comma-separated corpus folders (default: all)")
    build.set_defaults(run=run_build)

    info = actions.add_parser("info", help="print the summary of a built dataset")
    info.add_argument("folder", type=Path)
    info.set_defaults(run=run_info)

    tokenize = actions.add_parser(
        "tokenize", help="encode every clip with the codec into a token cache for LM training "
        "(skips splits already done)")
    tokenize.add_argument("--dataset", required=True, type=Path, help="a built dataset folder")
    tokenize.add_argument("--codec", type=Path,
                          help="codec weights (.safetensors), or a codec run's checkpoint.pt "
                          "(default: the shipped codec)")
    tokenize.add_argument("--out", required=True, type=Path, help="token cache folder")
    tokenize.add_argument("--batch-size", type=int, default=16, help="clips encoded together")
    tokenize.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    tokenize.set_defaults(run=run_tokenize)


def run_build(args: argparse.Namespace) -> int:
    from tqdm import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm

    config = load_config(DatasetConfig, args.config) if args.config else DatasetConfig()
    overrides = {}
    if args.clip_seconds is not None:
        overrides["clip_seconds"] = args.clip_seconds
    if args.sources:
        overrides["sources"] = [s.strip() for s in args.sources.split(",") if s.strip()]
    config = replace_config(config, overrides, source="command line")

    if args.hours is not None:
        bar = tqdm(total=args.hours, unit="h", desc="building", bar_format=(
            "{desc}: {percentage:3.0f}%|{bar}| {n:.2f}/{total:.2f} h [{elapsed}<{remaining}]"))
        advance = lambda result: bar.update(min(result.seconds / 3600, bar.total - bar.n))  # noqa: E731
    else:
        bar = tqdm(total=args.limit, unit="piece", desc="building")
        advance = lambda result: bar.update(bool(result.rows))  # noqa: E731

    def on_piece(result: PieceResult) -> None:
        advance(result)
        bar.set_postfix_str(result.slug[:40])

    with logging_redirect_tqdm(), bar:
        report = build_dataset(args.out, config, args.seed, hours=args.hours, limit=args.limit,
                               workers=args.workers, on_piece=on_piece)
    print(format_summary(args.out, report))
    return 0


def run_info(args: argparse.Namespace) -> int:
    summary_path = args.folder / "summary.json"
    if not summary_path.is_file():
        print(f"indie: error: {args.folder} has no summary.json (is it a built dataset?)")
        return 2
    print(format_summary(args.folder, BuildReport(json.loads(summary_path.read_text()))))
    return 0


def run_tokenize(args: argparse.Namespace) -> int:
    import torch
    from tqdm import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm

    from engine.data.tokens import tokenize_dataset
    from engine.weights import DEFAULT_CODEC, load_codec, load_codec_checkpoint

    if not (args.dataset / "train.jsonl").is_file():
        raise FileNotFoundError(f"{args.dataset} has no train.jsonl (is it a built dataset?)")
    if args.threads:
        torch.set_num_threads(args.threads)
    codec_path = args.codec or DEFAULT_CODEC
    if codec_path.suffix == ".pt":
        if not codec_path.is_file():
            raise FileNotFoundError(f"no codec checkpoint {codec_path}")
        codec = load_codec_checkpoint(codec_path)
    else:
        codec = load_codec(codec_path)
    bars: dict[str, tqdm] = {}

    def on_clips(split: str, done: int, total: int) -> None:
        bar = bars.get(split)
        if bar is None:
            bar = bars[split] = tqdm(total=total, unit="clip", desc=f"tokenizing {split}")
        bar.update(done - bar.n)
        if done == total:
            bar.close()

    with logging_redirect_tqdm():
        info = tokenize_dataset(args.dataset, codec, args.out, codec_name=str(codec_path),
                                batch_size=args.batch_size, on_clips=on_clips)
    for split, numbers in info["splits"].items():
        print(f"  {split:5s} {numbers['clips']:6d} clips  {numbers['frames']:9d} frames  "
              f"({numbers['frames'] / info['frame_rate'] / 3600:.2f} h)")
    print(f"token cache {args.out}: {info['num_codebooks']} codebooks of "
          f"{info['codebook_size']} codes at {info['frame_rate']:g} frames/s")
    return 0


def format_summary(folder: Path, report: BuildReport) -> str:
    """A person-readable account of a build: amounts, splits, label shares and speed."""
    s = report.summary
    pieces = s["pieces"]
    lines = [f"dataset {folder} (seed {s.get('seed')}): {s['hours']:.2f} h in {s['clips']} clips "
             f"from {pieces['used']} pieces ({pieces['skipped']} skipped)"]
    for split, numbers in s["splits"].items():
        lines.append(f"  {split:5s} {numbers['hours']:7.2f} h  {numbers['clips']:6d} clips  "
                     f"{numbers['pieces']:5d} pieces")
    for name, counts in s["labels"].items():
        total = sum(counts.values()) or 1
        shares = ", ".join(f"{k} {100 * v / total:.0f}%" for k, v in list(counts.items())[:8])
        lines.append(f"  {name}: {shares}")
    if s.get("bpm"):
        lines.append(f"  bpm: {s['bpm']['min']}–{s['bpm']['max']} (mean {s['bpm']['mean']})")
    build = s.get("build")
    if build:
        lines.append(f"  this run: {build['hours_rendered']:.2f} h rendered from "
                     f"{build['pieces_rendered']} pieces ({build['pieces_resumed']} resumed) in "
                     f"{build['wall_seconds']:.0f} s with {build['workers']} workers, "
                     f"{build['x_realtime']:.0f}× real time")
    return "\n".join(lines)
