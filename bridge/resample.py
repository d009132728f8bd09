"""Streaming rational resampling in numpy (model rate → sound card rate), block by block.

A polyphase windowed-sinc filter: the output is the same whatever the block sizes, so the
audio thread's producer can resample each block as it arrives without clicks at block edges.
No torch here: this runs on the producer thread beside the audio callback.
"""

from __future__ import annotations

from math import gcd

import numpy as np

TAPS_PER_PHASE = 32
KAISER_BETA = 8.0


class StreamResampler:
    """Resample a mono float32 stream from `source_rate` to `target_rate`.

    Args:
        source_rate: input samples per second.
        target_rate: output samples per second.
        taps: filter taps per polyphase branch (quality vs. cost).
    """

    def __init__(self, source_rate: int, target_rate: int, taps: int = TAPS_PER_PHASE) -> None:
        g = gcd(source_rate, target_rate)
        self.up, self.down = target_rate // g, source_rate // g
        self.taps = taps
        length = self.up * taps
        cutoff = 0.5 / max(self.up, self.down) * 0.94  # cycles per upsampled sample
        n = np.arange(length) - (length - 1) / 2
        h = 2 * cutoff * np.sinc(2 * cutoff * n) * np.kaiser(length, KAISER_BETA) * self.up
        self._phases = h.reshape(taps, self.up).T.astype(np.float32)  # [up, taps]: h[p + m·up]
        self._arange = np.arange(taps)
        self.delay = (length - 1) / 2 / self.up  # in input samples
        self.reset()

    def reset(self) -> None:
        self._buffer = np.zeros(self.taps - 1, np.float32)
        self._base = -(self.taps - 1)  # input index of _buffer[0]
        self._next = 0  # next output index

    def process(self, block: np.ndarray) -> np.ndarray:
        """Resample the next block; returns the output samples it completes."""
        self._buffer = np.concatenate([self._buffer, np.asarray(block, np.float32)])
        available = self._base + len(self._buffer)  # input samples seen so far
        end = -(-(available * self.up) // self.down)  # first output needing an unseen input
        outputs = np.arange(self._next, end)
        if len(outputs) == 0:
            return np.zeros(0, np.float32)
        k = outputs * self.down  # upsampled index of each output
        newest = k // self.up - self._base  # [n] buffer index of the newest input used
        index = newest[:, None] - self._arange[None, :]  # [n, taps]
        out = np.einsum("nt,nt->n", self._phases[k % self.up], self._buffer[index])
        self._next = int(end)
        keep_from = int((end * self.down) // self.up - self._base) - (self.taps - 1)
        if keep_from > 0:
            self._buffer = self._buffer[keep_from:]
            self._base += keep_from
        return out.astype(np.float32)

    def flush(self) -> np.ndarray:
        """The tail still inside the filter (call once at the end of a stream)."""
        tail = self.process(np.zeros(int(np.ceil(self.delay)) + 1, np.float32))
        self.reset()
        return tail
