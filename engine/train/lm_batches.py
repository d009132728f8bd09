"""Training batches for the LM: random crops of the token cache with their conditions.

A crop of T frames never straddles two clips. Its conditions come from the clip's index entry:
the caption's token embeddings (encoded once per distinct caption and cached beside the
tokens), the melody's one-hot chroma over the crop, the BPM, and the time from the crop's start
to its next bar line (so that beat phase 0 of the bar-length period falls on a downbeat).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

from engine.atomic import atomic_path, write_json_atomic
from engine.conditioning import Conditions
from engine.data.tokens import ClipTokens, TokenSplit
from engine.melody import notes_to_chroma

log = logging.getLogger(__name__)


class Batch(NamedTuple):
    """Codes [B, K, T] int64 and their conditions."""

    codes: Tensor
    conditions: Conditions


@dataclass
class TextTable:
    """Token embeddings of distinct captions, stored end to end: rows of caption c are
    `embeddings[offsets[c]:offsets[c + 1]]`."""

    captions: list[str]
    embeddings: Tensor  # [sum L, D] float16
    offsets: Tensor  # [C + 1] int64

    @classmethod
    def build(cls, captions: list[str], encoder, batch_size: int = 64) -> TextTable:
        rows, lengths = [], []
        for first in range(0, len(captions), batch_size):
            with torch.inference_mode():
                embeddings, mask = encoder.encode(captions[first:first + batch_size])
            for row in range(len(embeddings)):
                kept = embeddings[row][mask[row]]  # [L_c, D]
                rows.append(kept.to(torch.float16))
                lengths.append(len(kept))
        offsets = torch.tensor([0] + lengths).cumsum(0)
        return cls(list(captions), torch.cat(rows), offsets)

    @classmethod
    def cached(cls, folder: Path, captions: list[str], encoder) -> TextTable:
        """The table for `captions`, read from `folder` if it was built for them, else built
        and saved there (named after the encoder, so a test double never poisons it)."""
        name = getattr(encoder, "name", type(encoder).__name__)
        tensors_path, names_path = folder / f"text-{name}.safetensors", folder / f"text-{name}.json"
        if tensors_path.is_file() and names_path.is_file():
            stored = json.loads(names_path.read_text(encoding="utf-8"))
            if set(captions) <= set(stored):
                tensors = load_file(str(tensors_path))
                return cls(stored, tensors["embeddings"], tensors["offsets"])
        log.info("encoding %d captions with %s", len(captions), name)
        table = cls.build(captions, encoder)
        with atomic_path(tensors_path) as tmp:
            save_file({"embeddings": table.embeddings, "offsets": table.offsets}, str(tmp))
        write_json_atomic(names_path, table.captions, indent=0)
        return table

    def index(self) -> dict[str, int]:
        return {caption: i for i, caption in enumerate(self.captions)}


def bar_quarters(meter: str) -> float:
    """Quarter notes per bar of a meter such as "3/4" or "6/8" (4 when unreadable)."""
    try:
        top, bottom = meter.split("/")
        return float(Fraction(int(top) * 4, int(bottom)))
    except (ValueError, ZeroDivisionError):
        return 4.0


class CropSampler:
    """Crops of `frames` frames from one token split, with conditions.

    Args:
        split: the token split.
        text: caption embeddings covering every caption of the split.
        frames: crop length T; shorter clips are left out.
    """

    def __init__(self, split: TokenSplit, text: TextTable, frames: int) -> None:
        self.split, self.text, self.frames = split, text, frames
        self.clips: list[ClipTokens] = [c for c in split.clips if c.frames >= frames]
        if not self.clips:
            raise ValueError(f"no clip of the split has {frames} frames "
                             f"({frames / split.frame_rate:.1f} s): use shorter crops")
        caption_index = text.index()
        self.caption_of = [caption_index[c.caption] for c in self.clips]
        # The whole split's melody as one pitch class per frame (-1: none), built once.
        self.pitch_class = np.full(split.codes.shape[1], -1, dtype=np.int8)
        for clip in self.clips:
            chroma = notes_to_chroma(clip.melody, split.frame_rate, clip.frames)  # [12, T]
            classes = np.where(chroma.any(axis=0), chroma.argmax(axis=0), -1)
            self.pitch_class[clip.start:clip.start + clip.frames] = classes
        self.room = torch.tensor([c.frames - frames + 1 for c in self.clips], dtype=torch.float64)

    def random_batch(self, batch: int, generator: torch.Generator) -> Batch:
        """`batch` crops, clips drawn in proportion to their crop positions (every frame
        equally likely), offsets uniform."""
        clips = torch.multinomial(self.room, batch, replacement=True, generator=generator)
        picks = []
        for clip in clips.tolist():
            offset = int(torch.randint(int(self.room[clip]), (1,), generator=generator))
            picks.append((clip, offset))
        return self._batch(picks)

    def fixed_batches(self, count: int, batch: int) -> list[Batch]:
        """`count` batches of crops from clips spread evenly over the split (the clip's
        start), the same on every call: for validation."""
        total = count * batch
        clips = np.linspace(0, len(self.clips) - 1, total).round().astype(int).tolist()
        picks = [(clip, 0) for clip in clips]
        return [self._batch(picks[i:i + batch]) for i in range(0, total, batch)]

    def _batch(self, picks: list[tuple[int, int]]) -> Batch:
        T, rate = self.frames, self.split.frame_rate
        codes = np.stack([self.split.codes[:, self.clips[c].start + o:self.clips[c].start + o + T]
                          for c, o in picks])  # [B, K, T] int16
        classes = np.stack([self.pitch_class[self.clips[c].start + o:self.clips[c].start + o + T]
                            for c, o in picks]).astype(np.int64)  # [B, T]
        melody = torch.zeros(len(picks), 13, T)  # class 12 catches "no melody"
        melody.scatter_(1, torch.from_numpy(np.where(classes < 0, 12, classes))[:, None], 1.0)
        bpm = torch.tensor([self.clips[c].bpm for c, _ in picks], dtype=torch.float32)
        offsets = torch.tensor([self._bar_offset(self.clips[c], o / rate) for c, o in picks])
        rows = [self.caption_of[c] for c, _ in picks]
        length = max(int(self.text.offsets[r + 1] - self.text.offsets[r]) for r in rows)
        text = torch.zeros(len(picks), length, self.text.embeddings.shape[1])  # [B, L, D]
        mask = torch.zeros(len(picks), length, dtype=torch.bool)
        for i, r in enumerate(rows):
            tokens = self.text.embeddings[self.text.offsets[r]:self.text.offsets[r + 1]]
            text[i, :len(tokens)] = tokens.float()
            mask[i, :len(tokens)] = True
        conditions = Conditions(text=text, text_mask=mask, melody=melody[:, :12], bpm=bpm,
                                beat_offset=offsets.float())
        return Batch(torch.from_numpy(codes.astype(np.int64)), conditions)

    @staticmethod
    def _bar_offset(clip: ClipTokens, start: float) -> float:
        """Seconds from `start` (in the clip) to the next bar line (0 if unknown)."""
        if clip.downbeat is None or clip.bpm <= 0:
            return 0.0
        bar = bar_quarters(clip.meter) * 60.0 / clip.bpm
        return float((clip.downbeat - start) % bar)
