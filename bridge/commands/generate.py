"""`indie generate PROMPT -o out.wav`: one clip to a WAV/FLAC file, with a JSON sidecar.

The sidecar sits beside the audio as `out.json` (the audio file's suffix replaced, as the OSC
bridge writes its clips' sidecars). It holds every parameter with the seed resolved,
and the command line that makes the same audio again, bit for bit, on the same weights.
"""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path
from typing import Any

from engine import __version__


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "generate", help="generate music from a prompt (and melody, tempo) into a file",
        description="Generate a clip offline on the CPU. Writes the audio (WAV or FLAC, by "
                    "suffix) and a JSON sidecar beside it (take.wav -> take.json) holding every "
                    "parameter, the seed and the command that makes the same audio again.")
    parser.add_argument("prompt", help='what to play, e.g. "warm string quartet, 90 bpm, D minor"')
    parser.add_argument("-o", "--out", type=Path, required=True, help="output .wav or .flac")
    length = parser.add_mutually_exclusive_group()
    length.add_argument("--seconds", type=float, help="length in seconds (default 10)")
    length.add_argument("--bars", type=float, help="length in bars at --bpm")
    parser.add_argument("--bpm", type=float, help="tempo (also the tempo condition)")
    parser.add_argument("--beats-per-bar", type=int, default=4, help="beats in a bar (4)")
    parser.add_argument("--melody", help="MIDI file (top line) or audio file (its chroma)")
    parser.add_argument("--seed", type=int, help="sampling seed (default: random, recorded)")
    parser.add_argument("--pattern", help="decoding pattern (default: the LM's own)")
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--top-k", type=int, default=250, help="0 disables")
    parser.add_argument("--top-p", type=float, default=0.0, help="0 disables")
    parser.add_argument("--cfg", type=float, default=3.0, help="classifier-free guidance")
    parser.add_argument("--continue", dest="continue_from", metavar="FILE",
                        help="an audio clip to carry on from")
    parser.add_argument("--codec", type=Path, help="codec safetensors (default: shipped)")
    parser.add_argument("--lm", type=Path, help="LM safetensors (default: shipped)")
    parser.add_argument("--threads", type=int, help="torch threads while generating (default 1)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from engine.audio import write_audio
    from engine.engine import Engine
    from engine.inputs import check_audio_input, check_melody_file, check_prompt

    check_output_name(args.out)
    # Before seconds of loading (the engine checks everything again): a broken file is one line.
    check_prompt(args.prompt)
    if args.melody:
        check_melody_file(args.melody)
    if args.continue_from:
        check_audio_input(args.continue_from, "clip to continue")
    seconds = args.seconds if args.seconds is not None or args.bars is not None else 10.0
    engine = Engine.load(args.codec, args.lm, threads=args.threads)
    with tqdm(total=1, unit="step", desc="generating", leave=False) as bar:

        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        result = engine.generate(
            args.prompt, seconds=seconds, bars=args.bars, bpm=args.bpm,
            beats_per_bar=args.beats_per_bar, melody=args.melody, seed=args.seed,
            pattern=args.pattern, temperature=args.temperature, top_k=args.top_k,
            top_p=args.top_p, cfg=args.cfg, continue_from=args.continue_from,
            progress=progress)
    write_audio(args.out, result.audio, result.sample_rate)
    write_sidecar(args.out, result.params, result.sample_rate, len(result.audio),
                  weights={"codec": _weights_name(args.codec), "lm": _weights_name(args.lm)})
    print(f"wrote {args.out} ({len(result.audio) / result.sample_rate:.2f} s, "
          f"seed {result.params['seed']}) and {sidecar_path(args.out)}")
    return 0


def check_output_name(path: Path) -> None:
    """Fail before generating when the output suffix cannot be written."""
    from engine.audio import AudioFileError

    if path.suffix.lower() not in (".wav", ".flac"):
        raise AudioFileError("the output must end in .wav or .flac", path)


def sidecar_path(audio_path: str | Path) -> Path:
    """`take.wav` → `take.json`."""
    return Path(audio_path).with_suffix(".json")


def write_sidecar(audio_path: str | Path, params: dict[str, Any], sample_rate: int,
                  samples: int, weights: dict[str, str | None]) -> Path:
    """Write the JSON sidecar of a generated file, atomically; return its path.

    Args:
        audio_path: the audio file it describes.
        params: `GeneratedAudio.params` (every argument, seed resolved).
        sample_rate, samples: what was written.
        weights: the codec and LM files used (None: the shipped defaults).
    """
    from engine.atomic import write_json_atomic

    sidecar = {
        "indie": __version__,
        "audio": Path(audio_path).name,
        "sample_rate": sample_rate,
        "samples": samples,
        "params": params,
        "weights": weights,
        "command": regenerate_command(params, audio_path, weights),
    }
    return write_json_atomic(sidecar_path(audio_path), sidecar)


def regenerate_command(params: dict[str, Any], audio_path: str | Path,
                       weights: dict[str, str | None]) -> str:
    """The `indie generate` command line that makes the same audio from `params`."""
    words = ["indie", "generate", params["prompt"], "-o", str(audio_path)]
    options = [("--seconds", "seconds"), ("--bars", "bars"), ("--bpm", "bpm"),
               ("--beats-per-bar", "beats_per_bar"), ("--melody", "melody"),
               ("--seed", "seed"), ("--pattern", "pattern"), ("--temperature", "temperature"),
               ("--top-k", "top_k"), ("--top-p", "top_p"), ("--cfg", "cfg"),
               ("--continue", "continue_from")]
    for flag, key in options:
        value = params.get(key)
        if value is not None and not isinstance(value, list):  # notes come only from the API
            words += [flag, repr(value) if isinstance(value, float) else str(value)]
    for name, path in weights.items():
        if path is not None:
            words += [f"--{name}", path]
    return shlex.join(words)


def _weights_name(path: Path | None) -> str | None:
    return None if path is None else str(path)
