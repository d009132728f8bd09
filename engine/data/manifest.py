"""The dataset manifest: one JSON line per clip, one file per split (train/valid/test.jsonl).

A row names its audio file (relative to the manifest), its caption, its labels and its melody
as notes in seconds relative to the clip's start; `chroma()` turns the melody into the LM's
one-hot chroma at any frame rate.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from engine.atomic import write_text_atomic
from engine.data.captions import ClipLabels
from engine.melody import Note, notes_to_chroma

SPLITS = ("train", "valid", "test")


@dataclass(frozen=True)
class ClipRow:
    """One clip of the dataset.

    Attributes:
        id: unique clip name ("bach_bwv101.7-000").
        audio: path of the FLAC file, relative to the dataset folder.
        seconds: duration of the clip.
        split: "train", "valid" or "test" (all clips of a piece share one).
        piece: the corpus piece it comes from ("bach/bwv101.7.mxl").
        start: where the clip starts in the rendered piece, in seconds.
        caption: the text prompt.
        labels: the facts behind the caption.
        melody: the melody voice's notes, clip-relative seconds.
        downbeat: seconds from the clip's start to its first bar line (None if it has none).
    """

    id: str
    audio: str
    seconds: float
    split: str
    piece: str
    start: float
    caption: str
    labels: ClipLabels
    melody: tuple[Note, ...]
    downbeat: float | None

    def chroma(self, frame_rate: float) -> np.ndarray:
        """The melody as one-hot chroma `[12, T]`, T = ceil(seconds · frame_rate)."""
        return notes_to_chroma(self.melody, frame_rate, int(np.ceil(self.seconds * frame_rate)))

    def to_record(self) -> dict:
        """A JSON-ready dict (melody notes as [pitch, onset, offset] triples)."""
        record = asdict(self)
        record["labels"]["instruments"] = list(self.labels.instruments)
        record["melody"] = [[n.pitch, round(n.onset, 4), round(n.offset, 4)] for n in self.melody]
        return record

    @classmethod
    def from_record(cls, record: dict) -> ClipRow:
        record = dict(record)
        labels = dict(record.pop("labels"))
        labels["instruments"] = tuple(labels["instruments"])
        melody = tuple(Note(int(p), float(on), float(off)) for p, on, off in record.pop("melody"))
        return cls(**record, labels=ClipLabels(**labels), melody=melody)

    def to_json(self) -> str:
        return json.dumps(self.to_record(), ensure_ascii=False)

    @classmethod
    def from_json(cls, line: str) -> ClipRow:
        return cls.from_record(json.loads(line))


def write_manifest(path: str | Path, rows: Iterable[ClipRow]) -> Path:
    """Write rows as JSON lines, atomically."""
    return write_text_atomic(path, "".join(row.to_json() + "\n" for row in rows))


def read_manifest(path: str | Path) -> list[ClipRow]:
    """Read a split's manifest; audio paths stay relative (see `audio_path`)."""
    return list(iter_manifest(path))


def iter_manifest(path: str | Path) -> Iterator[ClipRow]:
    with open(path, encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if line.strip():
                try:
                    yield ClipRow.from_json(line)
                except (ValueError, TypeError, KeyError) as error:
                    message = f"{path}:{number}: not a valid manifest row: {error}"
                    raise ValueError(message) from None


def audio_path(manifest: str | Path, row: ClipRow) -> Path:
    """The absolute path of a row's audio file."""
    return Path(manifest).resolve().parent / row.audio
