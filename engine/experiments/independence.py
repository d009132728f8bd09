"""The independence experiment: does an MMD-regularised codec make fast factorised decoding
(parallel / delay / coarse-first) lose less against the joint model (flatten)?

For every codec × pattern arm, with LMs of the same size, data, steps and seed:

- dependence of the codec (METHOD.md §3): mean pairwise MI of the code streams, delay-aligned
  and same-frame, and held-out MMD², on the test split (`engine.evaluation.codec_eval`);
- what the LM sees: validation cross-entropy per codebook, and its gap to the flatten arm of
  the same codec (the dependence a factorised pattern throws away);
- quality of N generated clips (FD, KL, text and melody adherence, as `indie eval lm`);
- speed of generation: LM steps and wall seconds per second of audio.

Everything lives under a work folder, so an interrupted run resumes where it stopped:

    dataset/               (only with max_clips) manifests of the chosen clips
    tokens/<codec>/        the token cache of each codec (`engine.data.tokens`)
    codec-<codec>.json     the codec's dependence numbers
    runs/<codec>-<pattern>/  one LM run per arm (`engine.train.lm_trainer`, resumable)
    arms/<codec>-<pattern>.json  the arm's measurements: a finished arm is skipped
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import NamedTuple

import numpy as np

from engine.atomic import write_json_atomic
from engine.config import from_dict, to_dict
from engine.data.manifest import SPLITS, audio_path, read_manifest, write_manifest
from engine.experiments.config import IndependenceExperimentConfig, arm_name, arm_train_config
from engine.independence import IndependenceConfig
from engine.lm import LanguageModel
from engine.train.lm_trainer import LMTrainConfig

log = logging.getLogger(__name__)

Progress = Callable[[str], None]


def prepare_dataset(config: IndependenceExperimentConfig, work: Path) -> Path:
    """The dataset folder to use: the configured one, or `max_clips` of each split of it
    (spread evenly over the split; the audio stays where it is)."""
    source = Path(config.dataset)
    if not (source / "train.jsonl").is_file():
        raise FileNotFoundError(f"{source} has no train.jsonl (is it a built dataset?)")
    if not config.max_clips:
        return source
    folder = work / "dataset"
    for split in SPLITS:
        manifest = source / f"{split}.jsonl"
        rows = read_manifest(manifest)
        keep = np.unique(np.linspace(0, len(rows) - 1, min(config.max_clips, len(rows)))
                         .round().astype(int))
        # Absolute audio paths: `audio_path` joins them to the new manifest's folder unchanged.
        write_manifest(folder / f"{split}.jsonl",
                       [replace(rows[i], audio=str(audio_path(manifest, rows[i]))) for i in keep])
    return folder


def load_any_codec(path: str | Path):
    """A codec from shipped-style safetensors or from a codec run's checkpoint.pt."""
    from engine.weights import load_codec, load_codec_checkpoint

    path = Path(path)
    if path.suffix == ".pt":
        if not path.is_file():
            raise FileNotFoundError(f"no codec checkpoint {path}")
        return load_codec_checkpoint(path)
    return load_codec(path)


def mmd_settings(config: IndependenceExperimentConfig) -> IndependenceConfig:
    """The MMD settings the reference codec was trained with (defaults when it has none)."""
    from engine.weights import manifest_path

    path = config.codecs.get(config.mmd_reference)
    if path and Path(path).suffix != ".pt" and manifest_path(path).is_file():
        saved = json.loads(manifest_path(path).read_text(encoding="utf-8")).get("independence")
        if saved:
            return from_dict(IndependenceConfig, saved, source=str(manifest_path(path)))
    return IndependenceConfig()


def codec_stage(config: IndependenceExperimentConfig, name: str, dataset: Path, work: Path,
                progress: Progress) -> tuple[object, Path, dict]:
    """Tokenize the dataset with one codec and measure its dependence (each done once)."""
    from engine.data.tokens import tokenize_dataset
    from engine.evaluation.codec_eval import evaluate_codec

    codec = load_any_codec(config.codecs[name])
    tokens = work / "tokens" / name
    progress(f"{name}: tokenizing {dataset}")
    tokenize_dataset(dataset, codec, tokens, codec_name=str(config.codecs[name]))
    result_path = work / f"codec-{name}.json"
    saved = json.loads(result_path.read_text(encoding="utf-8")) if result_path.is_file() else {}
    settings = {"weights": str(config.codecs[name]), "codec_clips": config.eval.codec_clips,
                "mmd_reference": config.mmd_reference}
    if saved.get("settings") == settings:
        dependence = saved
    else:
        progress(f"{name}: mutual information and held-out MMD²")
        full = evaluate_codec(codec, dataset / "test.jsonl",
                              max_clips=config.eval.codec_clips or None,
                              independence=mmd_settings(config), speed=False)
        dependence = {
            "settings": settings,
            "weights": str(config.codecs[name]),
            "clips": full["clips"],
            "mi_delay_aligned": full["mi_delay_aligned"],
            "mi_same_frame": full["mi_same_frame"],
            "heldout_mmd": full["heldout_mmd"],
            "code_entropy_bits": full["code_usage"]["entropy_bits"],
            "mel_distance": full["mel_distance"],
        }
        write_json_atomic(result_path, dependence)
    return codec, tokens, dependence


class QualityReference:
    """What every arm is compared with: the chosen test items, the tagger and the tags of the
    real clips (computed once per run)."""

    def __init__(self, config: IndependenceExperimentConfig, dataset: Path, sample_rate: int):
        from engine.audio import read_audio
        from engine.evaluation.lm_eval import select_items
        from engine.evaluation.tagger import load_tagger, tag_clips

        self.manifest = dataset / "test.jsonl"
        rows = read_manifest(self.manifest)
        self.items = select_items(rows, config.eval.clips, config.eval.seconds)
        self.tagger = load_tagger(config.tagger or None)
        self.rate = sample_rate
        length = round(config.eval.seconds * sample_rate)
        chosen = {item.row.id for item in self.items}

        def real(row) -> np.ndarray:
            return read_audio(audio_path(self.manifest, row), sample_rate)[0, :length].numpy()

        self.real_tags = tag_clips(self.tagger, [real(i.row) for i in self.items], sample_rate)
        self.reference_tags = tag_clips(self.tagger, [real(r) for r in rows if r.id not in chosen],
                                        sample_rate)

    def measure(self, name: str, clips: list[np.ndarray]) -> dict:
        """FD, KL, text/melody/tempo adherence of clips generated for `self.items`."""
        from engine.evaluation.lm_eval import _set_metrics
        from engine.evaluation.tagger import tag_clips

        tags = tag_clips(self.tagger, clips, self.rate)
        return _set_metrics(name, clips, tags, self.real_tags, self.reference_tags, self.items,
                            self.rate, self.tagger, False, "tiny")


class TrainedArm(NamedTuple):
    """An arm's LM after training, with the run's config and cost."""

    train: LMTrainConfig
    lm: LanguageModel
    train_seconds: float
    step: int


def train_arm(config: IndependenceExperimentConfig, codec_name: str, pattern: str, codec,
              tokens: Path, work: Path, text_encoder, progress: Progress) -> TrainedArm:
    """Train (or resume) the arm's LM to `train.steps`, then load it from its checkpoint."""
    from engine.train.lm_trainer import train_lm
    from engine.weights import lm_from_checkpoint, read_checkpoint

    train = arm_train_config(config, pattern, str(tokens), codec)
    run = work / "runs" / arm_name(codec_name, pattern)
    progress(f"{arm_name(codec_name, pattern)}: training to step {train.steps}")
    train_lm(train, run, resume=True, text_encoder=text_encoder)
    checkpoint = read_checkpoint(run / "checkpoint.pt")
    lm = lm_from_checkpoint(checkpoint, source=str(run / "checkpoint.pt"))
    return TrainedArm(train, lm, float(checkpoint["train_seconds"]), int(checkpoint["step"]))


def arm_settings(config: IndependenceExperimentConfig, codec_name: str, pattern: str, codec,
                 tokens: Path, dataset: Path) -> dict:
    """Everything an arm's numbers depend on: a saved arm is reused only when they match."""
    return {"train": to_dict(arm_train_config(config, pattern, str(tokens), codec)),
            "eval": to_dict(config.eval), "tagger": config.tagger, "dataset": str(dataset),
            "codec": str(config.codecs[codec_name])}


def measure_arm(config: IndependenceExperimentConfig, codec_name: str, pattern: str, codec,
                tokens: Path, work: Path, text_encoder, reference: QualityReference,
                progress: Progress) -> dict:
    """Train one arm's LM, then its validation cross-entropy, quality and speed."""
    from engine.engine import Engine
    from engine.train.lm_trainer import load_samplers, validate

    train, lm, train_seconds, step = train_arm(config, codec_name, pattern, codec, tokens,
                                               work, text_encoder, progress)
    _, valid = load_samplers(train, text_encoder)
    ce = validate(train, lm, valid.fixed_batches(config.eval.valid_batches,
                                                  train.data.batch_size))
    per_codebook = [ce[f"valid/ce/k{k}"] for k in range(train.lm.num_codebooks)]

    ev = config.eval
    engine = Engine(codec, lm, text_encoder, threads=ev.threads)
    clips, steps, wall = [], [], 0.0
    totals: list[int] = []  # the step count of each call, as its progress reports it
    for i, item in enumerate(reference.items):
        progress(f"{arm_name(codec_name, pattern)}: generating {i + 1}/{len(reference.items)}")
        started = time.perf_counter()
        take = engine.generate(item.row.caption, seconds=ev.seconds, bpm=item.bpm or None,
                               melody=list(item.melody) or None, seed=ev.seed + i,
                               pattern=pattern, cfg=ev.cfg, top_k=ev.top_k,
                               progress=lambda done, count: totals.append(count))
        wall += time.perf_counter() - started
        clips.append(take.audio)
        steps.append(totals[-1])
    audio_seconds = sum(len(c) for c in clips) / engine.sample_rate
    return {
        "arm": arm_name(codec_name, pattern),
        "codec": codec_name,
        "pattern": pattern,
        "train": {"steps": step, "train_seconds": round(train_seconds, 1),
                  "parameters": sum(p.numel() for p in lm.parameters()),
                  "max_steps": train.lm.max_steps},
        "valid_ce": {"per_codebook": per_codebook, "mean": float(np.mean(per_codebook))},
        "quality": reference.measure(arm_name(codec_name, pattern), clips),
        "speed": {"clips": len(clips), "audio_seconds": round(audio_seconds, 3),
                  "steps_per_audio_second": sum(steps) / audio_seconds,
                  "wall_seconds_per_audio_second": wall / audio_seconds,
                  "generation_wall_seconds": round(wall, 3)},
    }


def ce_gaps(arms: dict[str, dict]) -> dict[str, dict | None]:
    """Per arm, validation cross-entropy minus that of the flatten arm of the same codec.

    Returns:
        arm → {"per_codebook": [...], "mean": float} (nats; > 0: the pattern loses what the
        joint model sees), or None when that codec has no flatten arm.
    """
    flat = {a["codec"]: a["valid_ce"]["per_codebook"] for a in arms.values()
            if a["pattern"] == "flatten"}
    gaps: dict[str, dict | None] = {}
    for name, arm in arms.items():
        base = flat.get(arm["codec"])
        if base is None:
            gaps[name] = None
            continue
        per = [float(a - b) for a, b in zip(arm["valid_ce"]["per_codebook"], base, strict=True)]
        gaps[name] = {"per_codebook": per, "mean": float(np.mean(per))}
    return gaps


def run_independence(config: IndependenceExperimentConfig, work: str | Path,
                     out: str | Path, *, command: str = "", text_encoder=None,
                     progress: Progress | None = None) -> dict:
    """Run (or resume) every arm and write the report.

    Args:
        config: the experiment.
        work: the resumable work folder (token caches, LM runs, per-arm results).
        out: where independence.md, independence.json and the plots go.
        command: the command line quoted in the report.
        text_encoder: captions → embeddings (default: the frozen MiniLM).
        progress: called with a line of text at each stage.

    Returns:
        The JSON written to `out/independence.json`.
    """
    from engine.experiments.report import write_report

    work, out = Path(work), Path(out)
    progress = progress or (lambda line: log.info("%s", line))
    if text_encoder is None:
        from engine.conditioning.text import TextEncoder

        text_encoder = TextEncoder()
    started = time.monotonic()
    dataset = prepare_dataset(config, work)
    arms, dependence, reference = {}, {}, None
    for codec_name in config.codecs:
        codec, tokens, dependence[codec_name] = codec_stage(config, codec_name, dataset, work,
                                                            progress)
        for pattern in config.patterns:
            name = arm_name(codec_name, pattern)
            path = work / "arms" / f"{name}.json"
            settings = arm_settings(config, codec_name, pattern, codec, tokens, dataset)
            saved = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
            if saved and saved.get("settings") == settings:
                progress(f"{name}: finished earlier, skipped")
                arms[name] = saved
                continue
            if saved:
                progress(f"{name}: settings changed since its last result, measured again")
            if reference is None:
                reference = QualityReference(config, dataset, codec.sample_rate)
            arms[name] = {**measure_arm(config, codec_name, pattern, codec, tokens, work,
                                        text_encoder, reference, progress),
                          "settings": settings}
            write_json_atomic(path, arms[name])
    gaps = ce_gaps(arms)
    for name, arm in arms.items():
        arm["ce_gap_to_flatten"] = gaps[name]
        arm["dependence"] = dependence[arm["codec"]]
    result = {"command": command, "config": to_dict(config), "dataset": str(dataset),
              "arms": arms, "wall_seconds_this_run": round(time.monotonic() - started, 1)}
    write_report(result, out)
    return result
