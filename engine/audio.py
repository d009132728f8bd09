"""Audio file I/O: read anything libsndfile reads as mono at the model rate, write WAV/FLAC.

Every problem with a file surfaces as an AudioFileError whose message names the file,
never as a bare libsndfile error.
"""

import io
import logging
import numbers
import os
import struct
from pathlib import Path
from typing import BinaryIO

import numpy as np
import soundfile as sf
import torch
import torchaudio

from engine.atomic import write_bytes_atomic

logger = logging.getLogger(__name__)

SAMPLE_RATE = 32000

# Suffix -> libsndfile container; both default to 16-bit PCM.
_WRITE_FORMATS = {".flac": "FLAC", ".wav": "WAV"}
_DEFAULT_SUBTYPE = "PCM_16"
_FLOAT_SUBTYPES = frozenset({"FLOAT", "DOUBLE"})

_BLOCK_FRAMES = 1 << 18
# libsndfile's frame count when the header does not say (e.g. a FLAC written as a stream).
_UNKNOWN_FRAMES = 2**63 - 1

# (magic, form type) -> (name, struct byte order, chunk holding the samples).
_CHUNKED_LAYOUTS = {
    (b"RIFF", b"WAVE"): ("WAV", "<", b"data"),
    (b"FORM", b"AIFF"): ("AIFF", ">", b"SSND"),
    (b"FORM", b"AIFC"): ("AIFF", ">", b"SSND"),
}
# Streaming writers leave the size as 0 or 0xFFFFFFFF: unknown, not truncated.
_UNKNOWN_CHUNK_SIZES = (0, 0xFFFFFFFF)

StrPath = str | os.PathLike[str]


class AudioFileError(ValueError):
    """An audio file that cannot be read or written; the message says why and names the file."""

    def __init__(self, problem: str, path: StrPath) -> None:
        super().__init__(f"{problem}: {path}")
        self.problem = problem
        self.path = Path(path)

    def __reduce__(self):  # keep it picklable (e.g. across DataLoader workers)
        return type(self), (self.problem, self.path)


def read_audio(path: StrPath, sample_rate: int = SAMPLE_RATE) -> torch.Tensor:
    """Read an audio file as mono float32 at `sample_rate`.

    Args:
        path: any file libsndfile reads (WAV, FLAC, OGG Vorbis, AIFF, ...), any rate and
            channel count.
        sample_rate: the rate to return; the file is resampled if it differs.

    Returns:
        A float32 tensor of shape [1, N]; channels are averaged.

    Raises:
        AudioFileError: missing, empty, truncated, corrupt or non-audio file, no frames,
            or NaN/infinite samples.
    """
    sample_rate = _check_rate(sample_rate)
    path = Path(path)
    with _open(path) as f:
        file_rate, promised = f.samplerate, f.frames
        frames = _read_all(f, path)
    if promised != _UNKNOWN_FRAMES and len(frames) < promised:
        raise AudioFileError(
            f"truncated audio file (header promises {promised} frames, "
            f"only {len(frames)} could be read)",
            path,
        )
    if len(frames) == 0:
        raise AudioFileError("audio file contains no audio (0 frames)", path)
    non_finite = int(np.count_nonzero(~np.isfinite(frames)))
    if non_finite:
        raise AudioFileError(f"audio file has {non_finite} NaN or infinite samples", path)

    audio = torch.from_numpy(frames.mean(axis=1, dtype=np.float32)).unsqueeze(0)
    if file_rate != sample_rate:
        audio = torchaudio.functional.resample(audio, file_rate, sample_rate)
    return audio


def write_audio(
    path: StrPath,
    audio: torch.Tensor | np.ndarray,
    sample_rate: int = SAMPLE_RATE,
    *,
    subtype: str | None = None,
) -> Path:
    """Write floating-point audio in [-1, 1] to a .wav or .flac file, atomically.

    Args:
        path: destination; the suffix picks the format (.wav or .flac).
        audio: a tensor or array shaped [N] (mono), [C, N] (channels first) or
            [1, C, N] (a batch of one).
        sample_rate: samples per second of `audio`.
        subtype: libsndfile subtype, e.g. "PCM_24" or "FLOAT" (WAV only); default "PCM_16".
            For integer subtypes, samples outside [-1, 1] are clipped (with a warning).

    Returns:
        The path written.
    """
    path = Path(path)
    container = _WRITE_FORMATS.get(path.suffix.lower())
    if container is None:
        what = f"{path.suffix!r} files" if path.suffix else "a file without a suffix"
        supported = ", ".join(_WRITE_FORMATS)
        raise AudioFileError(f"cannot write {what} (supported suffixes: {supported})", path)
    subtype = (subtype or _DEFAULT_SUBTYPE).upper()
    if not sf.check_format(container, subtype):
        choices = ", ".join(sf.available_subtypes(container))
        raise AudioFileError(
            f"subtype {subtype!r} is not available for {container} (choose from: {choices})", path
        )
    sample_rate = _check_rate(sample_rate)
    frames = _to_frames(audio)

    if subtype not in _FLOAT_SUBTYPES:
        # soundfile also has libsndfile clip; doing it here too makes the count exact and
        # keeps the result independent of that setting.
        clipped = int(np.count_nonzero(np.abs(frames) > 1.0))
        if clipped:
            total = frames.size
            logger.warning("%s: clipped %d of %d samples to [-1, 1]", path, clipped, total)
            frames = np.clip(frames, -1.0, 1.0)  # a copy: never touch the caller's buffer

    # Encoded in memory first: libsndfile reports a full disk only as "System error", while
    # a plain file write raises OSError with its errno (ENOSPC) for the caller to report.
    encoded = io.BytesIO()
    try:
        sf.write(encoded, frames, sample_rate, format=container, subtype=subtype)
    except sf.SoundFileError as e:
        raise AudioFileError(f"could not write audio file ({_reason(e)})", path) from None
    write_bytes_atomic(path, encoded.getvalue())
    return path


def audio_duration(path: StrPath) -> float:
    """Return the length of an audio file in seconds, from its header.

    Raises the same AudioFileError as read_audio for missing, empty, non-audio, truncated
    WAV/AIFF and frameless files; damage inside a compressed stream only shows when decoding.
    """
    path = Path(path)
    with _open(path) as f:
        frames, rate = f.frames, f.samplerate
        if frames == _UNKNOWN_FRAMES:
            frames = len(_read_all(f, path))
    if frames == 0:
        raise AudioFileError("audio file contains no audio (0 frames)", path)
    return frames / rate


def _open(path: Path) -> sf.SoundFile:
    """Open `path` for reading, turning every failure into an AudioFileError."""
    _check_file(path)
    try:
        return sf.SoundFile(path)
    except sf.SoundFileError as e:
        raise AudioFileError(f"not a readable audio file ({_reason(e)})", path) from None


def _read_all(f: sf.SoundFile, path: Path) -> np.ndarray:
    """Decode the rest of `f` as float32 [N, C], block by block.

    Blocks, because soundfile would allocate the header's frame count up front, and a
    damaged header can claim anything.
    """
    blocks = []
    try:
        while True:
            block = f.read(_BLOCK_FRAMES, dtype="float32", always_2d=True)
            blocks.append(block)
            if len(block) < _BLOCK_FRAMES:
                return np.concatenate(blocks)
    except sf.SoundFileError as e:
        raise AudioFileError(f"corrupt or truncated audio file ({_reason(e)})", path) from None


def _check_file(path: Path) -> None:
    """Catch what libsndfile would only call 'System error' or silently accept."""
    if path.is_dir():
        raise AudioFileError("expected an audio file, found a directory", path)
    try:
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            if size == 0:
                raise AudioFileError("audio file is empty (0 bytes)", path)
            _check_sample_chunk(fh, size, path)
    except FileNotFoundError:
        raise AudioFileError("no such audio file", path) from None
    except OSError as e:
        raise AudioFileError(f"cannot open audio file ({e.strerror or e})", path) from None


def _check_sample_chunk(fh: BinaryIO, size: int, path: Path) -> None:
    """Reject a WAV or AIFF file whose sample chunk is shorter than its header says.

    libsndfile silently returns only the samples present in a truncated WAV or AIFF, so a
    cut-off copy would otherwise read as a shorter, valid clip.
    """
    header = fh.read(12)
    layout = _CHUNKED_LAYOUTS.get((header[:4], header[8:]))
    if layout is None:
        return
    kind, byte_order, sample_chunk = layout
    offset = 12
    while offset + 8 <= size:
        fh.seek(offset)
        chunk_id, chunk_size = struct.unpack(byte_order + "4sI", fh.read(8))
        if chunk_id == sample_chunk:
            present = size - offset - 8
            if chunk_size not in _UNKNOWN_CHUNK_SIZES and present < chunk_size:
                raise AudioFileError(
                    f"truncated or corrupt {kind} file (header promises {chunk_size} bytes "
                    f"of samples, only {present} present)",
                    path,
                )
            return
        offset += 8 + chunk_size + (chunk_size & 1)  # chunks are padded to even sizes


def _to_frames(audio: torch.Tensor | np.ndarray) -> np.ndarray:
    """Convert [N], [C, N] or [1, C, N] float audio to a C-contiguous float32 [N, C] array."""
    if isinstance(audio, torch.Tensor):
        if not audio.is_floating_point():
            raise ValueError(f"expected floating-point audio in [-1, 1], got {audio.dtype}")
        array = audio.detach().to("cpu", torch.float32).numpy()
    else:
        array = np.asarray(audio)
        if not np.issubdtype(array.dtype, np.floating):
            raise ValueError(f"expected floating-point audio in [-1, 1], got {array.dtype}")
        array = array.astype(np.float32, copy=False)

    shape = tuple(array.shape)
    if array.ndim == 3 and shape[0] == 1:
        array = array[0]
    elif array.ndim == 1:
        array = array[np.newaxis]
    if array.ndim != 2:
        raise ValueError(f"expected audio shaped [N], [C, N] or [1, C, N], got {list(shape)}")
    channels, length = array.shape
    if length == 0:
        raise ValueError("audio has no samples")
    if channels > length:
        # Almost surely a frames-first [N, C] array (the soundfile convention).
        raise ValueError(
            f"audio shaped {list(shape)} has more channels than samples; "
            "pass it channels first, as [C, N]"
        )
    if not np.isfinite(array).all():
        raise ValueError("audio contains NaN or infinite samples")
    return np.ascontiguousarray(array.T)


def _check_rate(sample_rate: int) -> int:
    """Return `sample_rate` as an int, or raise ValueError if it is not a positive integer."""
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, numbers.Integral):
        raise ValueError(f"sample rate must be an integer, got {sample_rate!r}")
    if sample_rate <= 0:
        raise ValueError(f"sample rate must be positive, got {sample_rate}")
    return int(sample_rate)


def _reason(error: sf.SoundFileError) -> str:
    """libsndfile's own words, without its 'Error : ' prefix and final period."""
    text = getattr(error, "error_string", None) or str(error)
    return text.removeprefix("Error : ").rstrip(".").strip() or "unknown libsndfile error"
