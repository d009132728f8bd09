"""All the audio of a split in one int16 array, for fast random crops during codec training.

Decoding FLAC for every training step would cost more than the step itself on a small codec, so
a split is decoded once into `cache/<split>.npy` beside its manifest (2 bytes a sample: 10 hours
at 32 kHz is 2.3 GB) and memory-mapped; crops never straddle two clips.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from engine.atomic import atomic_path, write_json_atomic
from engine.audio import read_audio
from engine.data.manifest import audio_path, read_manifest

log = logging.getLogger(__name__)


@dataclass
class AudioBank:
    """Clips concatenated as int16 samples, with each clip's start offset.

    Attributes:
        samples: `[S]` int16 (a memory map when loaded from the cache).
        starts: `[C + 1]` int64 offsets: clip c is `samples[starts[c]:starts[c + 1]]`.
        ids: clip ids, in manifest order.
        sample_rate: samples per second.
    """

    samples: np.ndarray
    starts: np.ndarray
    ids: list[str]
    sample_rate: int

    @property
    def seconds(self) -> float:
        return len(self.samples) / self.sample_rate

    @classmethod
    def load(cls, manifest: str | Path, sample_rate: int = 32000,
             max_hours: float | None = None) -> AudioBank:
        """Load a split, decoding it into the cache on first use.

        Args:
            manifest: a split's JSONL manifest (train.jsonl ...).
            max_hours: keep only the first clips up to this much audio (manifest order).
        """
        manifest = Path(manifest)
        rows = read_manifest(manifest)
        if max_hours is not None:
            kept, total = [], 0.0
            for row in rows:
                if total >= max_hours * 3600:
                    break
                kept.append(row)
                total += row.seconds
            rows = kept
        if not rows:
            raise ValueError(f"{manifest} has no clips")
        limit = "all" if max_hours is None else f"{max_hours:g}h"
        cache = manifest.parent / "cache" / f"{manifest.stem}-{sample_rate}-{limit}"
        index_path, samples_path = cache.with_suffix(".json"), cache.with_suffix(".npy")
        ids = [row.id for row in rows]
        if index_path.is_file() and samples_path.is_file():
            index = json.loads(index_path.read_text())
            if index["ids"] == ids:
                return cls(np.load(samples_path, mmap_mode="r"),
                           np.asarray(index["starts"], dtype=np.int64), ids, sample_rate)
        log.info("decoding %d clips of %s into %s", len(rows), manifest, samples_path)
        pieces = [_to_int16(read_audio(audio_path(manifest, row), sample_rate)[0].numpy())
                  for row in rows]
        starts = np.concatenate([[0], np.cumsum([len(p) for p in pieces])]).astype(np.int64)
        samples = np.concatenate(pieces)
        with atomic_path(samples_path) as tmp:
            np.save(tmp, samples)
        write_json_atomic(index_path, {"ids": ids, "starts": starts.tolist()})
        return cls(samples, starts, ids, sample_rate)

    def random_crops(self, batch: int, length: int, generator: torch.Generator) -> torch.Tensor:
        """`batch` crops of `length` samples from random clips at random offsets: `[B, 1, L]`.

        Clips are drawn in proportion to their length, so every second is equally likely.
        Clips shorter than `length` are zero-padded at the end.
        """
        lengths = torch.as_tensor(np.diff(self.starts), dtype=torch.float64)
        clips = torch.multinomial(lengths, batch, replacement=True, generator=generator)
        out = np.zeros((batch, 1, length), dtype=np.float32)
        for row, clip in enumerate(clips.tolist()):
            start, stop = int(self.starts[clip]), int(self.starts[clip + 1])
            room = max(stop - start - length, 0)
            offset = start + int(torch.randint(room + 1, (1,), generator=generator))
            piece = self.samples[offset:min(offset + length, stop)]
            out[row, 0, : len(piece)] = piece / 32768.0
        return torch.from_numpy(out)

    def fixed_crops(self, count: int, length: int) -> torch.Tensor:
        """`count` crops spread evenly over the bank, the same on every call: `[count, 1, L]`."""
        clips = np.linspace(0, len(self.ids) - 1, count).round().astype(int)
        out = np.zeros((count, 1, length), dtype=np.float32)
        for row, clip in enumerate(clips):
            start, stop = int(self.starts[clip]), int(self.starts[clip + 1])
            piece = self.samples[start:min(start + length, stop)]
            out[row, 0, : len(piece)] = piece / 32768.0
        return torch.from_numpy(out)


def _to_int16(samples: np.ndarray) -> np.ndarray:
    return np.clip(np.round(samples * 32767.0), -32768, 32767).astype(np.int16)
