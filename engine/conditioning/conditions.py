"""`Conditions`: one batch of text, melody and tempo conditions, with their "none" values."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class Conditions:
    """The conditions of a batch of B rows.

    Attributes:
        text: [B, L, 384] float32 token embeddings of the prompt.
        text_mask: [B, L] bool, True on real tokens (all False: no text).
        melody: [B, 12, T] one-hot chroma at the codec frame rate (an all-zero column: no
            melody at that frame).
        bpm: [B] float quarter notes per minute (0: no tempo).
        beat_offset: [B] float seconds from the first frame to the first (down)beat
            (0 if unknown).
    """

    text: Tensor
    text_mask: Tensor
    melody: Tensor
    bpm: Tensor
    beat_offset: Tensor

    def __post_init__(self) -> None:
        B = self.bpm.shape[0]
        shapes = {"text": (self.text, 3), "text_mask": (self.text_mask, 2),
                  "melody": (self.melody, 3), "beat_offset": (self.beat_offset, 1)}
        for name, (tensor, dims) in shapes.items():
            if tensor.dim() != dims or tensor.shape[0] != B:
                raise ValueError(f"conditions: {name} must have {dims} dims and batch {B}, "
                                 f"got {tuple(tensor.shape)}")
        if self.text_mask.shape != self.text.shape[:2]:
            raise ValueError(f"conditions: text_mask {tuple(self.text_mask.shape)} does not "
                             f"match text {tuple(self.text.shape)}")
        if self.melody.shape[1] != 12:
            raise ValueError(f"conditions: melody must be [B, 12, T], got "
                             f"{tuple(self.melody.shape)}")

    @property
    def batch_size(self) -> int:
        return self.bpm.shape[0]

    @property
    def num_frames(self) -> int:
        """T, the frames the time-aligned conditions cover."""
        return self.melody.shape[-1]

    @staticmethod
    def null_like(c: Conditions) -> Conditions:
        """The same shapes with every condition dropped (the unconditional rows of CFG)."""
        return Conditions(text=torch.zeros_like(c.text), text_mask=torch.zeros_like(c.text_mask),
                          melody=torch.zeros_like(c.melody), bpm=torch.zeros_like(c.bpm),
                          beat_offset=torch.zeros_like(c.beat_offset))

    @staticmethod
    def cat(items: Sequence[Conditions]) -> Conditions:
        """Concatenate batches; text is right-padded (masked) to the longest L."""
        if not items:
            raise ValueError("Conditions.cat needs at least one batch")
        frames = {c.num_frames for c in items}
        if len(frames) != 1:
            raise ValueError(f"Conditions.cat: melodies cover different frames {sorted(frames)}")
        length = max(c.text.shape[1] for c in items)
        texts, masks = [], []
        for c in items:
            pad = length - c.text.shape[1]
            texts.append(torch.nn.functional.pad(c.text, (0, 0, 0, pad)))  # [B, L, D]
            masks.append(torch.nn.functional.pad(c.text_mask, (0, pad)))  # [B, L]
        return Conditions(text=torch.cat(texts), text_mask=torch.cat(masks),
                          melody=torch.cat([c.melody for c in items]),
                          bpm=torch.cat([c.bpm for c in items]),
                          beat_offset=torch.cat([c.beat_offset for c in items]))

    def drop(self, text: Tensor | None = None, melody: Tensor | None = None,
             tempo: Tensor | None = None) -> Conditions:
        """Drop conditions row by row.

        Args:
            text, melody, tempo: [B] bool, True on the rows whose condition is dropped
                (None: keep that condition in every row).

        Returns:
            New conditions; the dropped ones take their "none" values.
        """
        out = dict(text=self.text, text_mask=self.text_mask, melody=self.melody, bpm=self.bpm,
                   beat_offset=self.beat_offset)
        if text is not None:
            out["text_mask"] = self.text_mask & ~text[:, None]
            out["text"] = self.text.masked_fill(text[:, None, None], 0.0)
        if melody is not None:
            out["melody"] = self.melody.masked_fill(melody[:, None, None], 0.0)
        if tempo is not None:
            out["bpm"] = self.bpm.masked_fill(tempo, 0.0)
            out["beat_offset"] = self.beat_offset.masked_fill(tempo, 0.0)
        return Conditions(**out)

    def to(self, device: torch.device | str) -> Conditions:
        return Conditions(self.text.to(device), self.text_mask.to(device),
                          self.melody.to(device), self.bpm.to(device),
                          self.beat_offset.to(device))
