"""The public engine: prompt (+ melody, tempo, a clip to continue) in, audio out.

Three levels, as in audiocraft: the LM's forward pass (training), the token loop
(engine/generate.py) and this user-facing object, which is all the bridge sees:

    engine = Engine.load()
    take = engine.generate("warm string quartet, D minor", bars=4, bpm=90, seed=7)
    for block in engine.stream("solo piano, 120 bpm", seconds=8):   # float32 mono blocks
        play(block)
    engine.cancel()                                                 # from any thread

Every input is checked before any model runs, so a bad request raises EngineError and produces
no audio. `stream` decodes frames through the codec's streaming decoder as the LM completes
them; `generate` collects the same blocks, so both give the same samples for the same seed.
One generation runs at a time (a lock); others wait for it.
"""

from __future__ import annotations

import logging
import secrets
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from engine.codec import Codec
from engine.conditioning import Conditions
from engine.generate import SamplingParams, generate_frames
from engine.inputs import (
    EngineError,
    MelodySource,
    check_bpm,
    check_prompt,
    melody_chroma,
    read_continuation,
    resolve_seconds,
    tempo_from_prompt,
)
from engine.melody import Note
from engine.patterns import Pattern, get_pattern

__all__ = ["Engine", "EngineError", "GeneratedAudio", "GenerationStream"]

logger = logging.getLogger(__name__)

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class GeneratedAudio:
    """One generated clip.

    Attributes:
        audio: float32 mono samples [N]; exactly the asked length unless cancelled.
        sample_rate: samples per second.
        params: every argument of the call, seed and pattern resolved, JSON-ready:
            `engine.generate(**params)` makes the same audio again (the sidecar's content).
        cancelled: True when cancel() stopped it early; `audio` then holds what was made.
    """

    audio: np.ndarray
    sample_rate: int
    params: dict[str, Any]
    cancelled: bool


class GenerationStream(Iterator[np.ndarray]):
    """The blocks of one generation, and its resolved parameters (`params`, for a sidecar)."""

    def __init__(self, blocks: Iterator[np.ndarray], params: dict[str, Any]) -> None:
        self._blocks = blocks
        self.params = params

    def __next__(self) -> np.ndarray:
        return next(self._blocks)

    def close(self) -> None:
        """Stop early and let the next generation start."""
        self._blocks.close()


@dataclass(frozen=True)
class _Job:
    """A checked request, ready to run."""

    params: dict[str, Any]
    conditions: Conditions  # batch 1, time-aligned over context + output frames
    prefix: Tensor | None  # [1, K, P] codes of the clip to continue
    num_frames: int  # frames to generate
    num_samples: int  # samples of the output
    pattern: Pattern
    sampling: SamplingParams
    cancel: threading.Event


class Engine:
    """Text (+ melody, tempo, continuation) to music with the codec and the LM.

    Args:
        codec: a causal codec (for the streaming decoder), in eval mode.
        lm: a LanguageModel whose codebooks match the codec's.
        text_encoder: turns prompts into token embeddings (`encode(list[str])`).
        threads: torch intra-op threads while generating (None: leave torch's setting).
        block_frames: frames decoded per streamed block after the first block (which goes out
            as soon as its first frame is complete); 5 frames = 100 ms at 50 frames/s.
    """

    def __init__(self, codec: Codec, lm, text_encoder, threads: int | None = None,
                 block_frames: int = 5) -> None:
        config = lm.config
        if (config.num_codebooks, config.codebook_size) != (codec.num_codebooks,
                                                             codec.cardinality):
            raise ValueError(f"the LM models {config.num_codebooks} codebooks of "
                             f"{config.codebook_size} codes, the codec has "
                             f"{codec.num_codebooks} of {codec.cardinality}")
        lm_rate = getattr(config, "frame_rate", codec.frame_rate)
        if abs(lm_rate - codec.frame_rate) > 1e-6:  # the beat phase would drift
            raise ValueError(f"the LM expects {lm_rate} frames/s, the codec makes "
                             f"{codec.frame_rate}")
        if threads is not None and threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        if block_frames < 1:
            raise ValueError(f"block_frames must be >= 1, got {block_frames}")
        self.codec = codec.eval()
        self.lm = lm.eval()
        self.text_encoder = text_encoder
        self.threads = threads
        self.block_frames = block_frames
        self.weights: dict[str, str] = {}  # where the weights came from (Engine.load)
        self._decoder = codec.stream_decoder(1)
        self._lock = threading.Lock()
        self._owner: int | None = None
        self._jobs: weakref.WeakSet[threading.Event] = weakref.WeakSet()
        self._jobs_lock = threading.Lock()
        self._texts: OrderedDict[str, tuple[Tensor, Tensor]] = OrderedDict()
        self._warned: set[str] = set()  # patterns other than the LM's, warned about once

    @classmethod
    def load(cls, codec: str | Path | None = None, lm: str | Path | None = None,
             threads: int | None = None) -> Engine:
        """The engine with shipped weights (or the given safetensors files).

        Args:
            codec, lm: safetensors files (None: the shipped ones in engine/weights/).
            threads: torch threads while generating; None means 1. A decode step (batch 2,
                one token) is too small to split across cores: on a busy 2-core CPU two
                threads made steps 30x slower, waiting for each other.
        """
        from engine.conditioning.text import TextEncoder
        from engine.weights import DEFAULT_CODEC, DEFAULT_LM, load_codec, load_lm

        threads = 1 if threads is None else threads
        engine = cls(load_codec(codec), load_lm(lm), TextEncoder(), threads=threads)
        engine.weights = {"codec": str(codec or DEFAULT_CODEC), "lm": str(lm or DEFAULT_LM)}
        engine.text_encoder.encode([""])  # load the text model now, not at the first request
        return engine

    @property
    def sample_rate(self) -> int:
        """Output samples per second."""
        return self.codec.sample_rate

    @property
    def frame_rate(self) -> float:
        """Codec frames (LM time steps of the parallel pattern) per second."""
        return self.codec.frame_rate

    @property
    def max_seconds(self) -> float:
        """The longest output of the LM's own pattern (context of a continuation included)."""
        return self.max_seconds_for(self.lm.config.pattern)

    def max_seconds_for(self, pattern: str) -> float:
        """The longest output with `pattern` (flatten takes K times more steps per frame)."""
        return self._max_frames(get_pattern(pattern)) / self.frame_rate

    def generate(self, prompt: str, seconds: float | None = None, bars: float | None = None,
                 bpm: float | None = None, beats_per_bar: int = 4,
                 melody: MelodySource | None = None, seed: int | None = None,
                 pattern: str | None = None, temperature: float = 1.0, top_k: int = 250,
                 top_p: float = 0.0, cfg: float = 3.0,
                 continue_from: str | Path | np.ndarray | None = None,
                 progress: Progress | None = None) -> GeneratedAudio:
        """Generate a clip; see `stream` for the arguments.

        Returns:
            The audio, its rate, the resolved parameters and whether it was cancelled.
        """
        job = self._prepare(prompt, seconds, bars, bpm, beats_per_bar, melody, seed, pattern,
                            temperature, top_k, top_p, cfg, continue_from)
        blocks = list(self._run(job, progress))
        audio = np.concatenate(blocks) if blocks else np.zeros(0, dtype=np.float32)
        return GeneratedAudio(audio, self.sample_rate, job.params,
                              cancelled=len(audio) < job.num_samples)

    def stream(self, prompt: str, seconds: float | None = None, bars: float | None = None,
               bpm: float | None = None, beats_per_bar: int = 4,
               melody: MelodySource | None = None, seed: int | None = None,
               pattern: str | None = None, temperature: float = 1.0, top_k: int = 250,
               top_p: float = 0.0, cfg: float = 3.0,
               continue_from: str | Path | np.ndarray | None = None,
               progress: Progress | None = None) -> GenerationStream:
        """Generate a clip block by block; the input is checked before this returns.

        Args:
            prompt: what to play, in words; a stated tempo ("90 bpm") becomes the tempo
                condition unless `bpm` is given.
            seconds: output length; or `bars` with a tempo, for exactly
                bars * beats_per_bar * 60 / bpm seconds.
            bars, bpm, beats_per_bar: a bar-exact length at a host tempo; bpm alone is the
                tempo condition.
            melody: a MIDI file (its top line), an audio file (its chroma) or notes
                (pitch, onset s, offset s) from the start of the output.
            seed: sampling seed; None draws one (returned in the params).
            pattern: decoding pattern (engine.patterns.PATTERNS); default the LM's own.
            temperature, top_k, top_p, cfg: sampling (engine.generate.SamplingParams).
            continue_from: a clip (audio file, or float32 mono samples at `sample_rate`) whose
                codes prime the LM; the output starts where the clip ends.
            progress: progress(done_steps, total_steps), called from the generating thread.

        Returns:
            An iterator of float32 mono blocks (with `.params`, as in GeneratedAudio); the
            first block comes as soon as a frame is complete, and all together make the whole
            clip. Exhaust or close it: the engine runs one generation at a time.

        Raises:
            EngineError: a bad request (nothing is generated).
        """
        job = self._prepare(prompt, seconds, bars, bpm, beats_per_bar, melody, seed, pattern,
                            temperature, top_k, top_p, cfg, continue_from)
        return GenerationStream(self._run(job, progress), job.params)

    def cancel(self) -> None:
        """Stop the running generation (and any already asked for) within one LM step."""
        with self._jobs_lock:
            for event in list(self._jobs):
                event.set()

    def _prepare(self, prompt, seconds, bars, bpm, beats_per_bar, melody, seed, pattern,
                 temperature, top_k, top_p, cfg, continue_from) -> _Job:
        """Check a request and build the model inputs; EngineError on any mistake."""
        text = check_prompt(prompt)
        pattern_name = self.lm.config.pattern if pattern is None else pattern
        try:
            pattern_obj = get_pattern(pattern_name)
        except (ValueError, KeyError, TypeError) as e:
            raise EngineError(str(e)) from None  # names the pattern and the choices
        if pattern_name != self.lm.config.pattern and pattern_name not in self._warned:
            self._warned.add(pattern_name)
            logger.warning("pattern %r differs from the one the LM was trained with (%r): "
                           "expect poor audio", pattern_name, self.lm.config.pattern)
        seed = secrets.randbelow(2**31) if seed is None else seed
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            raise EngineError(f"seed must be an integer, got {seed!r}")
        try:
            sampling = SamplingParams(temperature=float(temperature), top_k=int(top_k),
                                      top_p=float(top_p), cfg=float(cfg), seed=int(seed))
        except (TypeError, ValueError) as e:
            raise EngineError(str(e)) from None

        tempo = check_bpm(bpm) if bpm is not None else tempo_from_prompt(text)
        max_frames = self._max_frames(pattern_obj)
        max_seconds = max_frames * self.codec.hop_length / self.sample_rate
        seconds = resolve_seconds(seconds, bars, tempo, beats_per_bar, max_seconds)
        num_samples = round(seconds * self.sample_rate)
        num_frames = -(-num_samples // self.codec.hop_length)
        if num_samples < 1:
            raise EngineError(f"seconds must be at least one sample long, got {seconds!r}")

        prefix = None
        if continue_from is not None:
            prefix = self._encode_context(read_continuation(continue_from, self.sample_rate),
                                          max_frames - num_frames)
        context = 0 if prefix is None else prefix.shape[-1]
        chroma = np.zeros((12, context + num_frames), dtype=np.float32)
        chroma[:, context:] = melody_chroma(melody, self.sample_rate, self.frame_rate,
                                            num_frames)
        # The output starts on a downbeat: the clip's first downbeat is a whole number of bars
        # before the end of the clip.
        bar_seconds = beats_per_bar * 60.0 / tempo if tempo else 0.0
        beat = (context / self.frame_rate) % bar_seconds if tempo else 0.0
        embeddings, mask = self._encode_text(text)
        conditions = Conditions(text=embeddings, text_mask=mask,
                                melody=torch.from_numpy(chroma)[None],  # [1, 12, T]
                                bpm=torch.tensor([tempo or 0.0]),
                                beat_offset=torch.tensor([beat]))
        params = {
            "prompt": prompt, "seconds": None if bars is not None else seconds, "bars": bars,
            "bpm": bpm, "beats_per_bar": beats_per_bar, "melody": _plain_melody(melody),
            "seed": int(seed), "pattern": pattern_name, "temperature": sampling.temperature,
            "top_k": sampling.top_k, "top_p": sampling.top_p, "cfg": sampling.cfg,
            "continue_from": _plain_clip(continue_from),
        }
        event = threading.Event()
        with self._jobs_lock:
            self._jobs.add(event)
        return _Job(params, conditions, prefix, num_frames, num_samples, pattern_obj,
                    sampling, event)

    def _run(self, job: _Job, progress: Progress | None) -> Iterator[np.ndarray]:
        """Generate frames, decode them in blocks, yield float32 mono audio."""
        if self._owner == threading.get_ident():
            raise EngineError("a generation is already running in this thread; finish or "
                              "close its stream first")
        with self._lock:
            self._owner = threading.get_ident()
            threads = torch.get_num_threads()
            try:
                if self.threads is not None:
                    torch.set_num_threads(self.threads)
                yield from self._blocks(job, progress)
            finally:
                torch.set_num_threads(threads)
                self._owner = None
                with self._jobs_lock:
                    self._jobs.discard(job.cancel)

    def _blocks(self, job: _Job, progress: Progress | None) -> Iterator[np.ndarray]:
        """The body of `_run`, under the lock."""
        decoder = self._decoder
        decoder.reset()
        if job.prefix is not None:
            decoder.step(job.prefix)  # the decoder's causal context: the clip's own audio
        frames = generate_frames(self.lm, job.conditions, job.num_frames, job.pattern,
                                 job.sampling, job.prefix, progress, job.cancel)
        pending: list[Tensor] = []
        waiting, left, first = 0, job.num_samples, True
        for codes in frames:  # [1, K, n]
            pending.append(codes)
            waiting += codes.shape[-1]
            if first or waiting >= self.block_frames:
                block = self._decode(decoder, pending, left)
                left -= len(block)
                pending, waiting, first = [], 0, False
                yield block
        if pending:
            yield self._decode(decoder, pending, left)

    def _decode(self, decoder, pending: list[Tensor], left: int) -> np.ndarray:
        """Audio of the pending frames, cut to the `left` samples the output still needs."""
        audio = decoder.step(torch.cat(pending, dim=-1))  # [1, 1, n * hop]
        return audio[0, 0, :left].numpy().astype(np.float32, copy=True)

    def _encode_text(self, prompt: str) -> tuple[Tensor, Tensor]:
        """Token embeddings [1, L, D] and mask [1, L] of a prompt (the last 32 cached)."""
        cached = self._texts.get(prompt)
        if cached is None:
            with torch.inference_mode():
                cached = self.text_encoder.encode([prompt])
            self._texts[prompt] = cached
            while len(self._texts) > 32:
                self._texts.popitem(last=False)
        self._texts.move_to_end(prompt)
        return cached

    def _encode_context(self, audio: np.ndarray, max_frames: int) -> Tensor:
        """Codes [1, K, P] of the end of a clip: at most `max_frames` whole frames.

        The clip is cut at its start to whole frames, so the output begins exactly where the
        clip ends.
        """
        hop = self.codec.hop_length
        frames = min(len(audio) // hop, max_frames)
        if frames < 1:
            if max_frames < 1:
                raise EngineError("no room left for the clip to continue: ask for fewer "
                                  "seconds (the clip and the output share the model's length)")
            raise EngineError(f"the clip to continue is shorter than one codec frame "
                              f"({hop} samples)")
        tail = torch.from_numpy(np.ascontiguousarray(audio[len(audio) - frames * hop:]))
        with torch.inference_mode():
            return self.codec.encode(tail[None, None])  # [1, K, P]

    def _max_frames(self, pattern: Pattern) -> int:
        """The most frames T whose pattern fits in the LM's max_steps."""
        k, limit = self.lm.config.num_codebooks, self.lm.config.max_steps
        low, high = 0, limit  # every pattern takes at least one step per frame
        while low < high:
            mid = (low + high + 1) // 2
            if pattern.num_steps(k, mid) <= limit:
                low = mid
            else:
                high = mid - 1
        return low


def _plain_melody(melody: MelodySource | None) -> str | list[list[float]] | None:
    """A melody argument as JSON: a path string or [[pitch, onset, offset], ...]."""
    if melody is None or isinstance(melody, (str, Path)):
        return None if melody is None else str(melody)
    return [[int(n[0]), float(n[1]), float(n[2])] for n in (Note(*m) for m in melody)]


def _plain_clip(clip: str | Path | np.ndarray | None) -> str | None:
    """A continuation as JSON: its path; an array is described, it cannot be replayed."""
    if clip is None or isinstance(clip, (str, Path)):
        return None if clip is None else str(clip)
    return f"<array of {np.asarray(clip).size} samples>"
