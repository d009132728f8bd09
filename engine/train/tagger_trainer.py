"""Training the audio tagger (engine/evaluation/tagger.py) on a dataset's labels.

Log-mel spectrograms and chroma of every clip are computed once and cached beside the
manifests (`cache/tagger-<split>-<digest>.{mels,chroma,len}.npy`, fp16); training then draws
random crops from the cache, so a step costs only the network. Training runs for a wall-clock
budget (the learning rate follows the elapsed fraction of it), then the tagger is scored on
whole clips of the valid and test splits against the majority-class baseline and exported with
its manifest.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from engine.atomic import atomic_path, write_json_atomic
from engine.config import to_dict
from engine.data.audio_bank import AudioBank
from engine.data.manifest import ClipRow, read_manifest
from engine.evaluation.tagger import HEADS, Tagger, TaggerConfig, export_tagger, normalise

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TaggerTrainConfig:
    """How to train the tagger.

    Attributes:
        tagger: features and network (its `classes` are filled from the training split).
        minutes: wall-clock budget of the training loop.
        max_steps: stop earlier after this many steps (None: the budget decides).
        batch_size, crop_seconds: random crops per step, and their length.
        learning_rate, weight_decay, warmup: AdamW; cosine decay over the budget after warm-up
            (a fraction of it).
        seed: crops, init and dropout.
        threads: torch intra-op threads.
    """

    tagger: TaggerConfig = field(default_factory=TaggerConfig)
    minutes: float = 10.0
    max_steps: int | None = None
    batch_size: int = 32
    crop_seconds: float = 4.0
    learning_rate: float = 3e-3
    weight_decay: float = 1e-2
    warmup: float = 0.03
    seed: int = 0
    threads: int = 1


@dataclass
class FeatureSet:
    """Cached features of a split: `mels [C, M, T_max]` and `chroma [C, 12, T_max]` fp16,
    `lengths [C]` frames, and the rows (labels)."""

    mels: np.ndarray
    chroma: np.ndarray
    lengths: np.ndarray
    rows: list[ClipRow]

    def targets(self, config: TaggerConfig) -> dict[str, np.ndarray]:
        """Class index per clip and head; -1 where the label is not in the tagger's classes."""
        out = {}
        for name, labels in config.classes.items():
            index = {label: i for i, label in enumerate(labels)}
            out[name] = np.array([index.get(getattr(r.labels, name), -1) for r in self.rows])
        return out


def load_features(manifest: str | Path, config: TaggerConfig) -> FeatureSet:
    """A split's raw log-mels and chroma, computed once into the dataset's cache folder."""
    manifest = Path(manifest)
    rows = read_manifest(manifest)
    if not rows:
        raise ValueError(f"{manifest} has no clips")
    feature_keys = ("sample_rate", "n_fft", "hop_length", "n_mels", "f_min", "f_max",
                    "chroma_fft")
    spec = json.dumps({k: getattr(config, k) for k in feature_keys}
                      | {"ids": [r.id for r in rows]}, sort_keys=True)
    digest = hashlib.sha1(spec.encode()).hexdigest()[:10]
    cache = manifest.parent / "cache" / f"tagger-{manifest.stem}-{digest}"
    paths = {name: cache.with_suffix(f".{name}.npy") for name in ("mels", "chroma", "len")}
    if all(path.is_file() for path in paths.values()):
        return FeatureSet(np.load(paths["mels"], mmap_mode="r"),
                          np.load(paths["chroma"], mmap_mode="r"), np.load(paths["len"]), rows)

    log.info("computing log-mels of %d clips of %s", len(rows), manifest)
    bank = AudioBank.load(manifest, config.sample_rate)
    features = Tagger(config).features
    lengths = np.diff(bank.starts) // config.hop_length + 1  # frames of a centred STFT
    mels = np.empty((len(rows), config.n_mels, int(lengths.max())), dtype=np.float16)
    chroma = np.zeros((len(rows), 12, int(lengths.max())), dtype=np.float16)
    with torch.no_grad():
        for c in range(len(rows)):
            clip = bank.samples[bank.starts[c]:bank.starts[c + 1]].astype(np.float32) / 32768.0
            log_mel, pitch_classes = features.raw(torch.from_numpy(clip)[None])  # [1, M|12, T]
            mels[c] = math.log(1e-6)  # silence after the end of a short clip
            mels[c, :, : log_mel.shape[-1]] = log_mel[0].numpy()
            chroma[c, :, : log_mel.shape[-1]] = pitch_classes[0].numpy()
            lengths[c] = log_mel.shape[-1]
    cache.parent.mkdir(parents=True, exist_ok=True)
    for name, array in (("mels", mels), ("chroma", chroma), ("len", lengths)):
        with atomic_path(paths[name]) as tmp:
            np.save(tmp, array)
    return FeatureSet(mels, chroma, lengths, rows)


def label_classes(rows: list[ClipRow]) -> dict[str, tuple[str, ...]]:
    """Each head's labels as found in the training rows, most frequent first."""
    return {name: tuple(label for label, _ in
                        Counter(getattr(r.labels, name) for r in rows).most_common())
            for name in HEADS}


@torch.no_grad()
def score(tagger: Tagger, features: FeatureSet, train_rows: list[ClipRow]) -> dict:
    """Accuracy per head on whole clips, beside two constant baselines.

    `majority` predicts the split's own most frequent label (the best constant guess, known
    only in hindsight); `train_prior` predicts the training split's most frequent label.
    """
    tagger.eval()
    config = tagger.config
    targets = features.targets(config)
    correct = {name: 0 for name in config.classes}
    for c in range(len(features.rows)):
        length = features.lengths[c]
        mel = torch.from_numpy(np.asarray(features.mels[c, :, :length], dtype=np.float32))
        chroma = torch.from_numpy(np.asarray(features.chroma[c, :, :length], dtype=np.float32))
        out = tagger(normalise(mel[None], config.log_std), chroma[None])  # [1, M|12, T]
        for name, logits in out.logits.items():
            correct[name] += int(int(logits[0].argmax()) == targets[name][c])
    result = {}
    for name in config.classes:
        labels = [getattr(r.labels, name) for r in features.rows]
        counts = Counter(labels)
        train_top = Counter(getattr(r.labels, name) for r in train_rows).most_common(1)[0][0]
        result[name] = {
            "accuracy": correct[name] / len(labels),
            "majority": counts.most_common(1)[0][1] / len(labels),
            "train_prior": counts.get(train_top, 0) / len(labels),
            "classes_seen": len(counts),
        }
    result["clips"] = len(features.rows)
    return result


def _crops(features: FeatureSet, targets: dict[str, np.ndarray], frames: int, batch: int,
           rng: np.random.Generator) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
    """Random crops of log-mel `[B, M, frames]` and chroma `[B, 12, frames]` (clips drawn by
    length) and their targets."""
    weights = features.lengths / features.lengths.sum()
    clips = rng.choice(len(features.lengths), size=batch, p=weights)
    out = np.full((batch, features.mels.shape[1], frames), math.log(1e-6), dtype=np.float32)
    chroma = np.zeros((batch, 12, frames), dtype=np.float32)
    for row, c in enumerate(clips):
        length = int(features.lengths[c])
        start = int(rng.integers(max(length - frames, 0) + 1))
        piece = features.mels[c, :, start:min(start + frames, length)]
        out[row, :, : piece.shape[-1]] = piece
        chroma[row, :, : piece.shape[-1]] = features.chroma[c, :, start:start + piece.shape[-1]]
    return (torch.from_numpy(out), torch.from_numpy(chroma),
            {k: torch.from_numpy(v[clips]) for k, v in targets.items()})


def train_tagger(dataset: str | Path, out: str | Path, config: TaggerTrainConfig | None = None,
                 on_log: Callable[[dict], None] | None = None) -> dict:
    """Train, score and export the tagger; returns the manifest's provenance.

    Args:
        dataset: folder with train/valid/test.jsonl (`indie dataset build`).
        out: folder for `tagger.safetensors` + `tagger.json`.
        config: training settings (defaults: TaggerTrainConfig()).
        on_log: called with a dict of numbers every few steps.
    """
    config = config or TaggerTrainConfig()
    dataset, out = Path(dataset), Path(out)
    threads = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    try:
        return _train(dataset, out, config, on_log)
    finally:
        torch.set_num_threads(threads)


def _train(dataset: Path, out: Path, config: TaggerTrainConfig,
           on_log: Callable[[dict], None] | None) -> dict:
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    started = time.monotonic()
    train_rows = read_manifest(dataset / "train.jsonl")
    tagger_config = TaggerConfig(**{**_fields(config.tagger),
                                    "classes": label_classes(train_rows)})
    train = load_features(dataset / "train.jsonl", tagger_config)
    sample = np.asarray(train.mels[:: max(len(train.rows) // 200, 1)], dtype=np.float32)
    centred = sample - sample.mean(axis=(1, 2), keepdims=True)
    tagger_config = TaggerConfig(**{**_fields(tagger_config),
                                    "log_std": round(float(centred.std()), 4)})
    feature_seconds = time.monotonic() - started

    tagger = Tagger(tagger_config)
    optimizer = torch.optim.AdamW(tagger.parameters(), lr=config.learning_rate,
                                  weight_decay=config.weight_decay)
    targets = train.targets(tagger_config)
    frames = round(config.crop_seconds * tagger_config.sample_rate / tagger_config.hop_length)
    budget = config.minutes * 60.0
    loop_start, step, losses = time.monotonic(), 0, []
    while True:
        elapsed = time.monotonic() - loop_start
        if elapsed >= budget or (config.max_steps is not None and step >= config.max_steps):
            break
        progress = elapsed / budget
        if progress < config.warmup:
            lr = config.learning_rate * max(progress / config.warmup, 0.02)
        else:
            cosine = 0.5 * (1 + math.cos(math.pi * (progress - config.warmup)
                                         / (1 - config.warmup)))
            lr = config.learning_rate * (0.02 + 0.98 * cosine)
        for group in optimizer.param_groups:
            group["lr"] = lr
        tagger.train()
        mels, chroma, y = _crops(train, targets, frames, config.batch_size, rng)
        result = tagger(normalise(mels, tagger_config.log_std), chroma)
        terms = {name: torch.nn.functional.cross_entropy(logits, y[name], ignore_index=-1)
                 for name, logits in result.logits.items()}
        loss = sum(terms.values())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        step += 1
        losses.append(float(loss.detach()))
        if on_log and step % 25 == 0:
            on_log({"step": step, "lr": lr, "loss": float(np.mean(losses[-25:])),
                    **{f"loss/{k}": float(v.detach()) for k, v in terms.items()},
                    "minutes": (time.monotonic() - loop_start) / 60})
    train_seconds = time.monotonic() - loop_start

    scores = {}
    for split in ("valid", "test"):
        manifest = dataset / f"{split}.jsonl"
        if manifest.is_file():
            scores[split] = score(tagger, load_features(manifest, tagger_config), train_rows)
    provenance = {
        "data": {"dataset": str(dataset), "train_clips": len(train_rows),
                 "train_hours": round(float(sum(r.seconds for r in train_rows)) / 3600, 3)},
        "training": {**{k: v for k, v in to_dict(config).items() if k != "tagger"},
                     "steps": step, "train_minutes": round(train_seconds / 60, 2),
                     "feature_minutes": round(feature_seconds / 60, 2),
                     "final_loss": round(float(np.mean(losses[-50:])), 4) if losses else None},
        "scores": scores,
    }
    out.mkdir(parents=True, exist_ok=True)
    export_tagger(tagger, out / "tagger.safetensors", provenance)
    write_json_atomic(out / "scores.json", scores)
    return provenance


def _fields(config: TaggerConfig) -> dict:
    """A TaggerConfig's fields as keyword arguments (tuples kept)."""
    return {name: getattr(config, name) for name in TaggerConfig.__dataclass_fields__}
