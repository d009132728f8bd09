"""Sound card output: a bounded ring buffer filled by the engine's stream, emptied by a callback.

The PortAudio callback (sounddevice, imported lazily) only copies from the ring buffer; it never
touches torch, never blocks on the producer and never allocates much. When the buffer runs dry
during a job it writes silence and counts an underrun. Between jobs silence is not an underrun.
Blocks arrive at the model rate and are resampled to the device rate on the producer side.

When the device goes away (the JACK server stops), PortAudio stops calling back and every later
call on that stream (stop, abort, close, even terminating PortAudio) blocks for ever. So a lost
stream is abandoned, never touched again: writers get `AudioLost` instead of waiting on a buffer
nobody empties, and the bridge carries on with files only.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass

import numpy as np

from bridge.resample import StreamResampler

logger = logging.getLogger(__name__)


class AudioLost(RuntimeError):
    """The output device stopped taking audio (e.g. the JACK server went away)."""


@dataclass(frozen=True)
class PlaybackStats:
    """What the output did: underrun events and missing samples, per job and in total."""

    underruns: int
    underrun_samples: int
    played_samples: int
    first_audio_time: float | None  # monotonic time of the job's first sample handed to the card
    total_underruns: int = 0  # since the stream opened (the others restart with each job)


def _equal_power(n: int) -> tuple[np.ndarray, np.ndarray]:
    x = (np.arange(n) + 0.5) / n
    return np.cos(0.5 * np.pi * x).astype(np.float32), np.sin(0.5 * np.pi * x).astype(np.float32)


class RingBuffer:
    """A bounded single-producer / single-consumer sample buffer with job framing.

    Args:
        capacity: samples it holds at most (the producer waits when full).
        prefill: samples a job must have buffered before playback starts (or its end).
    """

    def __init__(self, capacity: int, prefill: int) -> None:
        self._data = np.zeros(capacity, np.float32)
        self.capacity = capacity
        self.prefill = min(prefill, capacity)
        self._read = 0  # absolute sample counters; index = counter % capacity
        self._write = 0
        self._cond = threading.Condition()
        self._active = False  # a job is feeding the buffer
        self._playing = False  # prefill reached: the consumer is taking samples
        self._ended = False  # the producer wrote the job's last sample
        self._job_start = 0  # the job's first sample; before it, the last job's tail
        self.underruns = self.underrun_samples = self.played = 0
        self.total_underruns = 0
        self.first_audio_time: float | None = None
        self.marks: list[list] = []  # [position, time played or None], see mark()

    def mark(self) -> list:
        """Remember the next sample to be written; its entry gets the time it is played."""
        with self._cond:
            entry = [self._write, None]
            self.marks = self.marks[-7:] + [entry]  # pending marks only: the callback scans them
            return entry

    @property
    def available(self) -> int:
        return self._write - self._read

    def begin(self) -> None:
        """A new job starts feeding (its samples queue behind what is still buffered)."""
        with self._cond:
            self._active, self._ended = True, False
            # The last job's tail (a fade-out, or audio still to play) plays on; then the new
            # job waits for its own prefill.
            self._job_start = self._write
            self._playing = self.available > 0 and self._playing
            self.underruns = self.underrun_samples = self.played = 0
            self.first_audio_time = None

    def end(self) -> None:
        """The job wrote its last sample: drain without counting underruns."""
        with self._cond:
            self._ended = True
            self._cond.notify_all()

    def write(self, samples: np.ndarray, stop: threading.Event | _StopOrLost | None = None
              ) -> bool:
        """Append samples, waiting while the buffer is full; False if `stop` was set meanwhile."""
        samples = np.asarray(samples, np.float32)
        offset = 0
        while offset < len(samples):
            with self._cond:
                while self.available >= self.capacity:
                    if stop is not None and stop.is_set():
                        return False
                    self._cond.wait(0.02)
                n = min(self.capacity - self.available, len(samples) - offset)
                self._put(samples[offset:offset + n])
                offset += n
        return True

    def rewind(self, keep: int) -> np.ndarray:
        """Drop all but `keep` buffered samples; returns the dropped ones (to crossfade from)."""
        with self._cond:
            drop = max(self.available - keep, 0)
            start = self._write - drop
            dropped = self._take(start, drop)
            self._write = start
            self._job_start = min(self._job_start, start)
            self._cond.notify_all()
            return dropped

    def read(self, frames: int) -> np.ndarray:
        """For the audio callback: `frames` samples, silence where none are buffered."""
        out = np.zeros(frames, np.float32)
        with self._cond:
            prefilled = self._write - max(self._read, self._job_start) >= self.prefill
            if self._active and not self._playing and (prefilled or self._ended):
                self._playing = True
            if not self._playing:
                return out
            n = min(self.available, frames)
            if self._read < self._job_start and not (prefilled or self._ended):
                n = min(n, self._job_start - self._read)  # the tail only: this job prefills
            out[:n] = self._take(self._read, n)
            self._read += n
            if self.marks:
                now = time.monotonic()
                for entry in self.marks:
                    if self._read > entry[0]:
                        entry[1] = now
                self.marks = [entry for entry in self.marks if entry[1] is None]
            if n and self.first_audio_time is None:
                self.first_audio_time = time.monotonic()
            self.played += n
            if n < frames:
                if self._ended:
                    self._active = self._playing = False
                elif self._read <= self._job_start:  # between jobs: wait for the prefill
                    self._playing = False
                else:
                    self.underruns += 1
                    self.total_underruns += 1
                    self.underrun_samples += frames - n
            self._cond.notify_all()
        return out

    def drain(self, timeout: float) -> bool:
        """Wait until every buffered sample was played; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self.available > 0:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.05))
        return True

    def clear(self, fade: int = 0) -> None:
        """Stop the job now: keep at most `fade` samples, faded to silence (no click)."""
        with self._cond:
            keep = min(self.available, fade) if self._playing else 0
            if keep:
                ramp = np.cos(0.5 * np.pi * (np.arange(keep) + 0.5) / keep).astype(np.float32)
                self._write = self._read + keep
                self._put_at(self._read, self._take(self._read, keep) * ramp)
                self._ended = True
            else:
                self._read = self._write
                self._active = self._playing = False
            self._cond.notify_all()

    def _put_at(self, position: int, samples: np.ndarray) -> None:
        start = position % self.capacity
        first = min(len(samples), self.capacity - start)
        self._data[start:start + first] = samples[:first]
        self._data[:len(samples) - first] = samples[first:]

    def _put(self, samples: np.ndarray) -> None:
        self._put_at(self._write, samples)
        self._write += len(samples)

    def _take(self, position: int, n: int) -> np.ndarray:
        start = position % self.capacity
        first = min(n, self.capacity - start)
        return np.concatenate([self._data[start:start + first], self._data[:n - first]])


def check_output_device(device: str | int | None) -> str | None:
    """Why `device` cannot play (no PortAudio, no such device, no default), or None if it can."""
    try:
        import sounddevice as sd

        sd.query_devices(device, "output")
    except (OSError, ValueError) as error:  # PortAudioError is not an OSError subclass
        return str(error)
    except Exception as error:
        if type(error).__name__ == "PortAudioError":
            return str(error)
        raise
    return None


class AudioOut:
    """A running sounddevice output stream fed job by job.

    Args:
        source_rate: the engine's sample rate (blocks arrive at it).
        device: a sounddevice device name or index (None: the default output).
        buffer_seconds: ring buffer size (the producer may run this far ahead).
        prefill_seconds: audio buffered before a job starts playing.
        channels: the mono signal is copied to every channel.
    """

    def __init__(self, source_rate: int, device: str | int | None = None,
                 buffer_seconds: float = 1.0, prefill_seconds: float = 0.08,
                 channels: int = 2, blocksize: int = 0) -> None:
        import sounddevice as sd  # lazily: a server without PortAudio runs with --no-audio

        self._sd = sd
        info = sd.query_devices(device, "output")
        self.device_name = info["name"]
        self.rate = int(info["default_samplerate"])
        self.channels = min(channels, int(info["max_output_channels"]))
        self.source_rate = source_rate
        self.ring = RingBuffer(int(buffer_seconds * self.rate), int(prefill_seconds * self.rate))
        self._resampler = (StreamResampler(source_rate, self.rate)
                           if self.rate != source_rate else None)
        self.callback_errors = 0
        self._fade: np.ndarray | None = None
        self._fade_at = 0
        # Ring marks of the first sample after each restart: [position, time played].
        self.restart_marks: deque[list] = deque(maxlen=256)
        self.restarts = 0
        self._closed = False
        self._stream = sd.OutputStream(device=device, samplerate=self.rate,
                                       channels=self.channels, dtype="float32",
                                       blocksize=blocksize, latency="low",
                                       callback=self._callback)
        self._stream.start()
        self.output_latency = float(self._stream.latency)  # seconds from callback to the card
        logger.info("audio out: %s at %d Hz (%s), %d channel(s)", self.device_name, self.rate,
                    f"resampled from {source_rate} Hz" if self._resampler else "native",
                    self.channels)

    @property
    def lost(self) -> bool:
        """True once the device stopped the stream by itself (we never stop it before close)."""
        return not self._closed and not self._stream.active

    def begin(self) -> None:
        self._check()
        if self._resampler is not None:
            self._resampler.reset()
        self.ring.begin()

    def write(self, block: np.ndarray, stop: threading.Event | None = None) -> bool:
        """Queue a block at the model rate; waits while the buffer is full.

        Returns:
            False if `stop` was set while waiting.

        Raises:
            AudioLost: the device went away (before or while waiting).
        """
        self._check()
        if self._resampler is not None:
            block = self._resampler.process(block)
        if self._fade is not None and len(block):
            block = np.array(block, np.float32)
            fade_out, fade_in = _equal_power(len(self._fade))
            at = self._fade_at
            n = min(len(block), len(self._fade) - at)
            block[:n] = self._fade[at:at + n] * fade_out[at:at + n] + block[:n] * fade_in[at:at + n]
            self._fade_at += n
            if self._fade_at >= len(self._fade):
                self._fade = None
        return self._write_ring(block, stop)

    def _write_ring(self, samples: np.ndarray, stop: threading.Event | None) -> bool:
        written = self.ring.write(samples, _StopOrLost(stop, self))
        self._check()
        return written

    def _check(self) -> None:
        if self.lost:
            raise AudioLost(f"the sound card {self.device_name!r} stopped taking audio")

    def restart(self, keep: int) -> np.ndarray:
        """Cut the buffered audio back to `keep` device samples (a new chunk follows at once).

        Returns:
            The dropped samples (device rate), to crossfade from with `fade_from`.
        """
        if self._resampler is not None:
            self._resampler.reset()
        dropped = self.ring.rewind(keep)
        self.restart_marks.append(self.ring.mark())
        self.restarts += 1
        return dropped

    def fade_from(self, dropped: np.ndarray, seconds: float = 0.01) -> None:
        """Crossfade the next written samples from `dropped` (the audio that was cut)."""
        n = int(seconds * self.rate)
        fade = np.zeros(n, np.float32)
        fade[:min(n, len(dropped))] = dropped[:n]
        self._fade, self._fade_at = fade, 0

    def end(self) -> None:
        if self._resampler is not None:
            self._write_ring(self._resampler.flush(), None)
        self.ring.end()

    def stop_now(self, fade_seconds: float = 0.01) -> None:
        """Stop at once (cancel): the buffered audio is dropped after a 10 ms fade-out."""
        self.ring.clear(int(fade_seconds * self.rate))

    def stats(self) -> PlaybackStats:
        ring = self.ring
        return PlaybackStats(ring.underruns, ring.underrun_samples, ring.played,
                             ring.first_audio_time, ring.total_underruns)

    def close(self) -> None:
        if self._closed:
            return
        if self.lost:  # stop/close would block for ever: abandon the stream
            import atexit

            # sounddevice terminates PortAudio at exit, which would hang the same way.
            atexit.unregister(self._sd._exit_handler)
            logger.warning("audio out: %s was lost; its stream is abandoned", self.device_name)
        else:
            self._stream.stop()
            self._stream.close()
        self._closed = True

    def _callback(self, outdata: np.ndarray, frames: int, time_info, status) -> None:
        try:
            outdata[:] = self.ring.read(frames)[:, None]
        except Exception:  # never let an exception kill the audio thread
            outdata.fill(0)
            self.callback_errors += 1


class _StopOrLost:
    """An Event-like stop flag for RingBuffer.write: the caller's stop, or the device lost."""

    def __init__(self, stop: threading.Event | None, audio: AudioOut) -> None:
        self._stop, self._audio = stop, audio

    def is_set(self) -> bool:
        return (self._stop is not None and self._stop.is_set()) or self._audio.lost
