"""The token cache: every clip of a dataset encoded once by the codec, for LM training.

Encoding audio costs far more than an LM step on a small model, so `tokenize_dataset` runs the
codec over each split once and writes, into one folder:

    info.json             the codec (path, K, N, frame rate) and each split's clip/frame counts
    <split>.codes.npy     [K, F] int16: the codes of all clips of the split, end to end
    <split>.jsonl         one line per clip: id, start (first frame in the codes), frames,
                          caption, bpm, downbeat (s), meter, melody ([[pitch, on, off], ...])

A split already written for the same codec is skipped, so an interrupted run resumes at the
split it was working on. `TokenSplit.load` memory-maps the codes back.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from engine.atomic import atomic_path, write_json_atomic, write_text_atomic
from engine.codec import Codec
from engine.data.audio_bank import AudioBank
from engine.data.manifest import SPLITS, read_manifest
from engine.melody import Note

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClipTokens:
    """One clip's entry in a token split's index."""

    id: str
    start: int  # first frame of the clip in the split's codes
    frames: int
    caption: str
    bpm: float  # quarter notes per minute (0: unknown)
    downbeat: float | None  # seconds from the clip's start to its first bar line
    meter: str
    melody: tuple[Note, ...]

    def to_record(self) -> dict:
        return {"id": self.id, "start": self.start, "frames": self.frames,
                "caption": self.caption, "bpm": self.bpm, "downbeat": self.downbeat,
                "meter": self.meter,
                "melody": [[n.pitch, round(n.onset, 4), round(n.offset, 4)] for n in self.melody]}

    @classmethod
    def from_record(cls, record: dict) -> ClipTokens:
        melody = tuple(Note(int(p), float(on), float(off)) for p, on, off in record["melody"])
        return cls(record["id"], int(record["start"]), int(record["frames"]), record["caption"],
                   float(record["bpm"]), record["downbeat"], record["meter"], melody)


@dataclass
class TokenSplit:
    """A split of the token cache: codes [K, F] (memory-mapped int16) and the clip index."""

    codes: np.ndarray
    clips: list[ClipTokens]
    frame_rate: float

    @classmethod
    def load(cls, folder: str | Path, split: str) -> TokenSplit:
        folder = Path(folder)
        info_path = folder / "info.json"
        if not info_path.is_file():
            raise FileNotFoundError(f"{folder} is not a token cache (no info.json); make one "
                                    "with `indie dataset tokenize`")
        info = json.loads(info_path.read_text(encoding="utf-8"))
        if split not in info.get("splits", {}):
            raise FileNotFoundError(f"{folder} has no tokenized {split!r} split")
        codes = np.load(folder / f"{split}.codes.npy", mmap_mode="r")
        with open(folder / f"{split}.jsonl", encoding="utf-8") as lines:
            clips = [ClipTokens.from_record(json.loads(line)) for line in lines if line.strip()]
        return cls(codes, clips, float(info["frame_rate"]))

    @property
    def num_codebooks(self) -> int:
        return self.codes.shape[0]


def read_info(folder: str | Path) -> dict:
    """The token cache's info.json."""
    return json.loads((Path(folder) / "info.json").read_text(encoding="utf-8"))


def tokenize_dataset(dataset: str | Path, codec: Codec, out: str | Path, *,
                     codec_name: str = "", batch_size: int = 16,
                     splits: tuple[str, ...] = SPLITS,
                     on_clips: Callable[[str, int, int], None] | None = None) -> dict:
    """Encode every clip of every split with the codec into the token cache `out`.

    Args:
        dataset: a folder made by `indie dataset build` (train/valid/test.jsonl).
        codec: the codec, in eval mode.
        out: the cache folder (created).
        codec_name: how info.json names the codec (its weights path); a split tokenized
            under another name is redone.
        batch_size: clips encoded together.
        splits: which splits (each must have a manifest).
        on_clips: progress, called as on_clips(split, done, total) after each batch.

    Returns:
        The info.json written.
    """
    dataset, out = Path(dataset), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    codec_info = {"codec": codec_name, "num_codebooks": codec.num_codebooks,
                  "codebook_size": codec.cardinality, "frame_rate": codec.frame_rate,
                  "hop_length": codec.hop_length, "sample_rate": codec.sample_rate}
    info_path = out / "info.json"
    info = json.loads(info_path.read_text()) if info_path.is_file() else {}
    if {k: info.get(k) for k in codec_info} != codec_info:
        info = {**codec_info, "dataset": str(dataset), "splits": {}}
    for split in splits:
        done = info["splits"].get(split)
        if done and (out / f"{split}.codes.npy").is_file() and (out / f"{split}.jsonl").is_file():
            log.info("%s: already tokenized (%d clips), skipped", split, done["clips"])
            continue
        info["splits"].pop(split, None)
        info["splits"][split] = _tokenize_split(dataset / f"{split}.jsonl", codec, out, split,
                                                batch_size, on_clips)
        write_json_atomic(info_path, info)  # after each split: a resumed run skips it
    return info


def _tokenize_split(manifest: Path, codec: Codec, out: Path, split: str, batch_size: int,
                    on_clips: Callable[[str, int, int], None] | None) -> dict:
    """Encode one split; write its codes and index; return its counts."""
    rows = read_manifest(manifest)
    bank = AudioBank.load(manifest, codec.sample_rate)
    lengths = np.diff(bank.starts)
    hop = codec.hop_length
    frames = [math.ceil(int(n) / hop) for n in lengths]
    codes = np.zeros((codec.num_codebooks, sum(frames)), dtype=np.int16)  # [K, F]
    starts = np.concatenate([[0], np.cumsum(frames)]).astype(np.int64)
    if codec.cardinality > np.iinfo(np.int16).max:
        raise ValueError(f"codebooks of {codec.cardinality} codes do not fit in int16")
    # Clips of equal length batch without padding: encode them in order of length.
    order = sorted(range(len(rows)), key=lambda c: int(lengths[c]))
    with torch.inference_mode():
        for first in range(0, len(order), batch_size):
            batch = order[first:first + batch_size]
            longest = max(int(lengths[c]) for c in batch)
            audio = np.zeros((len(batch), 1, longest), dtype=np.float32)
            for row, clip in enumerate(batch):
                piece = bank.samples[bank.starts[clip]:bank.starts[clip + 1]]
                audio[row, 0, :len(piece)] = piece / 32768.0
            encoded = codec.encode(torch.from_numpy(audio)).numpy()  # [b, K, T]
            for row, clip in enumerate(batch):
                codes[:, starts[clip]:starts[clip + 1]] = encoded[row, :, :frames[clip]]
            if on_clips:
                on_clips(split, min(first + batch_size, len(order)), len(order))
    index = [ClipTokens(row.id, int(starts[c]), frames[c], row.caption,
                        float(row.labels.bpm or 0), row.downbeat, row.labels.meter, row.melody)
             for c, row in enumerate(rows)]
    with atomic_path(out / f"{split}.codes.npy") as tmp, open(tmp, "wb") as f:
        np.save(f, codes)
    write_text_atomic(out / f"{split}.jsonl",
                      "".join(json.dumps(c.to_record()) + "\n" for c in index))
    log.info("%s: %d clips, %d frames", split, len(index), codes.shape[1])
    return {"clips": len(index), "frames": int(codes.shape[1])}
