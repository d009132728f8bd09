"""`indie eval lm`: quality of generated music on the captions, melodies and tempi of the test
split, placed between two references.

For N test clips (spread evenly over the split) the engine generates a clip from the caption,
the clip's melody (as notes) and its BPM. The same numbers are computed for four sets:

- `real`: the test clips themselves, cut to the same length (the floor: what a perfect model
  would score with these metrics);
- `model`: the given LM;
- `model_no_melody`: the given LM without the melody condition (the melody's effect);
- `untrained`: an LM of the same config with random weights (the ceiling).

Per set: FD of the tagger embeddings against the other test clips (the same reference set for
all four, never containing the N selected clips), KL of the tagger posteriors against the real
clip of the same caption, text adherence, melody adherence (chroma similarity; pitch accuracy
with torchcrepe when installed) and tempo adherence (estimated vs asked BPM).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from engine.audio import read_audio
from engine.data.manifest import ClipRow, audio_path, read_manifest
from engine.evaluation import pitch
from engine.evaluation.metrics import (
    chroma_similarity,
    frechet_distance,
    label_adherence,
    posterior_kl,
)
from engine.evaluation.tagger import Tagger, TagResult, tag_clips
from engine.evaluation.tempo import estimate_tempo, tempo_agreement
from engine.melody import Note, crop_notes

log = logging.getLogger(__name__)

TEXT_HEADS = ("family", "mode", "tempo")  # the prompt facts text adherence checks
SETS = ("real", "model", "model_no_melody", "untrained")


@dataclass(frozen=True)
class LMEvalConfig:
    """What `evaluate_lm` generates and measures.

    Attributes:
        clips: test captions used (N); each set has N clips.
        seconds: length of every clip (real ones are cut from their start).
        seed: generation seed of clip i is seed + i; also the untrained LM's init.
        cfg, temperature, top_k: sampling.
        pitch: run torchcrepe (skipped, with a note in the result, when not installed).
        crepe_model: "tiny" or "full".
    """

    clips: int = 32
    seconds: float = 8.0
    seed: int = 0
    cfg: float = 3.0
    temperature: float = 1.0
    top_k: int = 250
    pitch: bool = True
    crepe_model: str = "tiny"


@dataclass(frozen=True)
class Item:
    """One selected test clip: its row, cropped melody and asked tempo."""

    row: ClipRow
    melody: tuple[Note, ...]
    bpm: float


def select_items(rows: list[ClipRow], count: int, seconds: float) -> list[Item]:
    """`count` rows spread evenly over the split (many pieces, not the first one's clips)."""
    if count < 2:
        raise ValueError(f"need at least 2 clips for a Fréchet distance, got {count}")
    if count > len(rows) - 2:
        raise ValueError(f"asked for {count} clips, the split has {len(rows)} "
                         f"(at least 2 must remain for the FD reference set)")
    indices = np.unique(np.linspace(0, len(rows) - 1, count).round().astype(int))
    return [Item(rows[i], tuple(crop_notes(rows[i].melody, 0.0, seconds)),
                 float(rows[i].labels.bpm)) for i in indices]


def evaluate_lm(engine, tagger: Tagger, manifest: str | Path,
                config: LMEvalConfig | None = None,
                on_progress: Callable[[str, int, int], None] | None = None) -> dict:
    """Every LM quality number, for the model and its two references.

    Args:
        engine: an engine.Engine with the LM to evaluate.
        tagger: the evaluation tagger (engine.evaluation.tagger).
        manifest: the test split's manifest.
        config: what to generate (defaults: LMEvalConfig()).
        on_progress: on_progress(set_name, done, total) after each clip.

    Returns:
        A JSON-ready dict: `config`, `clips` (ids), `reference_clips`, `sets` (per set name:
        fd, kl, text adherence, melody, tempo, seconds of generation), `melody_effect`,
        `notes`.
    """
    from engine.engine import Engine
    from engine.lm import LanguageModel

    config = config or LMEvalConfig()
    manifest = Path(manifest)
    rows = read_manifest(manifest)
    items = select_items(rows, config.clips, config.seconds)
    chosen = {item.row.id for item in items}
    rate = engine.sample_rate
    length = round(config.seconds * rate)
    notes = []

    def real(row: ClipRow) -> np.ndarray:
        return read_audio(audio_path(manifest, row), rate)[0, :length].numpy()

    audio: dict[str, list[np.ndarray]] = {"real": [real(item.row) for item in items]}
    reference = [real(row) for row in rows if row.id not in chosen]
    timing: dict[str, float] = {}

    torch.manual_seed(config.seed)  # the untrained LM's init
    untrained = Engine(engine.codec, LanguageModel(engine.lm.config), engine.text_encoder,
                       threads=engine.threads)
    runs = (("model", engine, True), ("model_no_melody", engine, False),
            ("untrained", untrained, True))
    for name, runner, with_melody in runs:
        started = time.monotonic()
        audio[name] = []
        for i, item in enumerate(items):
            take = runner.generate(item.row.caption, seconds=config.seconds, bpm=item.bpm,
                                   melody=list(item.melody) if with_melody else None,
                                   seed=config.seed + i, cfg=config.cfg,
                                   temperature=config.temperature, top_k=config.top_k)
            audio[name].append(take.audio)
            if on_progress:
                on_progress(name, i + 1, len(items))
        timing[name] = time.monotonic() - started

    tags = {name: tag_clips(tagger, clips, rate) for name, clips in audio.items()}
    # The real set's KL floor: each clip against another clip of the same piece (same labels,
    # other notes); KL of a clip against itself would be 0 by construction.
    partners = [_partner(rows, item.row) for item in items]
    paired = [i for i, row in enumerate(partners) if row is not None]
    partner_tags = tag_clips(tagger, [real(partners[i]) for i in paired], rate)
    reference_tags = tag_clips(tagger, reference, rate)
    use_pitch = config.pitch and pitch.available()
    if config.pitch and not use_pitch:
        notes.append("torchcrepe is not installed (pip install -e '.[eval]'): no pitch accuracy")

    sets = {}
    for name in SETS:
        sets[name] = _set_metrics(name, audio[name], tags[name], tags["real"], reference_tags,
                                  items, rate, tagger, use_pitch, config.crepe_model)
        if name == "real":
            sets[name]["kl"] = _kl(_subset(tags["real"], paired), partner_tags, tagger)
            sets[name]["kl"]["clips"] = len(paired)
        if name in timing:
            sets[name]["generation_seconds_per_clip"] = timing[name] / len(items)
            sets[name]["real_time_factor"] = config.seconds * len(items) / timing[name]
    with_melody = sets["model"]["melody"]["chroma_similarity"]
    without = sets["model_no_melody"]["melody"]["chroma_similarity"]
    return {
        "config": asdict(config),
        "manifest": str(manifest),
        "clips": [item.row.id for item in items],
        "reference_clips": len(reference),
        "sets": sets,
        "melody_effect": {
            "chroma_with_melody": with_melody, "chroma_without_melody": without,
            "difference": None if with_melody is None or without is None
            else with_melody - without,
        },
        "notes": notes,
    }


def _set_metrics(name: str, clips: list[np.ndarray], tags: TagResult, real: TagResult,
                 reference: TagResult, items: list[Item], rate: int, tagger: Tagger,
                 use_pitch: bool, crepe_model: str) -> dict:
    """The numbers of one set of N clips (aligned with `items`)."""
    text = {}
    for head in TEXT_HEADS:
        if head in tags.predictions:
            asked = [getattr(item.row.labels, head) for item in items]
            text[head] = label_adherence(tags.predictions[head], asked)
    heads = [h for h in TEXT_HEADS if h in tags.predictions]
    text["all"] = float(np.mean([all(tags.predictions[h][i] == getattr(item.row.labels, h)
                                     for h in heads) for i, item in enumerate(items)]))

    chroma = [chroma_similarity(item.melody, clip, rate) for item, clip in zip(
        items, clips, strict=True)]
    chroma = [c for c in chroma if c is not None]
    melody: dict = {"chroma_similarity": float(np.mean(chroma)) if chroma else None,
                    "chroma_clips": len(chroma)}
    if use_pitch:
        scores = [pitch.pitch_accuracy(item.melody, clip, rate, crepe_model)
                  for item, clip in zip(items, clips, strict=True)]
        scores = [s for s in scores if s is not None]
        melody["raw_pitch_accuracy"] = float(np.mean([s.raw_pitch for s in scores])) \
            if scores else None
        melody["raw_chroma_accuracy"] = float(np.mean([s.raw_chroma for s in scores])) \
            if scores else None

    agreements, estimates = [], []
    for item, clip in zip(items, clips, strict=True):
        estimate = estimate_tempo(clip, rate)
        estimates.append(estimate.bpm)
        agreements.append(tempo_agreement(estimate.bpm, item.bpm))
    errors = [a["relative_error"] for a in agreements if np.isfinite(a["relative_error"])]
    tempo = {
        "strict": float(np.mean([a["strict"] for a in agreements])),
        "octave": float(np.mean([a["octave"] for a in agreements])),
        "octave_errors": float(np.mean([a["octave_error"] for a in agreements])),
        "median_relative_error": float(np.median(errors)) if errors else None,
        "estimated_bpm": [None if not np.isfinite(b) else round(float(b), 2)
                          for b in estimates],
    }
    log.info("%s: %d clips measured", name, len(clips))
    return {
        "fd": frechet_distance(tags.embeddings, reference.embeddings),
        "kl": _kl(real, tags, tagger),
        "text_adherence": text,
        "melody": melody,
        "tempo": tempo,
        "rms_db": float(np.mean([10 * np.log10(np.mean(np.square(c)) + 1e-12)
                                 for c in clips])),
    }


def _kl(reference: TagResult, generated: TagResult, tagger: Tagger) -> dict:
    """Mean KL(reference ‖ generated) of the posteriors per head, and over heads."""
    if not len(reference.embeddings):
        return {"mean": None}
    kl = {head: float(posterior_kl(reference.probs[head], generated.probs[head]).mean())
          for head in tagger.config.classes}
    return {**kl, "mean": float(np.mean(list(kl.values())))}


def _subset(tags: TagResult, indices: list[int]) -> TagResult:
    """The clips `indices` of a TagResult."""
    return TagResult(tags.embeddings[indices], {k: v[indices] for k, v in tags.probs.items()},
                     {k: [v[i] for i in indices] for k, v in tags.predictions.items()})


def _partner(rows: list[ClipRow], row: ClipRow) -> ClipRow | None:
    """The clip of the same piece nearest in time to `row` (None for a one-clip piece)."""
    same = [r for r in rows if r.piece == row.piece and r.id != row.id]
    return min(same, key=lambda r: abs(r.start - row.start)) if same else None
