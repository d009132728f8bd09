"""What a user hands the engine, checked and turned into model inputs.

Length (seconds, or bars at a tempo), tempo (given, or read from the prompt: "... 90 BPM ..."),
melody (a MIDI file, an audio file or a list of notes → one-hot chroma) and the clip to continue
(an audio file or array). Every mistake becomes an EngineError whose message says what to fix;
nothing here runs the models.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path

import mido
import numpy as np

from engine.audio import AudioFileError, audio_duration, read_audio
from engine.melody import Note, audio_to_chroma, notes_to_chroma, top_line

MIDI_SUFFIXES = (".mid", ".midi", ".smf")
DRUM_CHANNEL = 9  # General MIDI channel 10: percussion, never melody
MIN_BPM, MAX_BPM = 20.0, 400.0
# Bounds on files a user hands in: a melody needs far less, and each bound keeps a hostile or
# mistaken file from taking the memory and minutes of a live set.
MAX_MIDI_BYTES = 256 * 1024  # about 32,000 notes; mido parses it all, about 2 s at this size
MAX_MIDI_NOTES = 4096
MAX_MIDI_SECONDS = 600.0
MAX_AUDIO_INPUT_SECONDS = 600.0

_BPM_IN_TEXT = re.compile(r"(\d{2,3}(?:\.\d+)?)\s*bpm\b", re.IGNORECASE)

MelodySource = str | Path | Sequence[Note] | Sequence[Sequence[float]]


class EngineError(ValueError):
    """A request the engine cannot carry out as given; the message says what to change."""


def check_prompt(prompt: object) -> str:
    """The prompt, stripped; EngineError when it is not a non-empty string."""
    if not isinstance(prompt, str) or not prompt.strip():
        raise EngineError("the prompt is empty: describe the music, e.g. "
                          "\"warm string quartet, 90 bpm, D minor\"")
    return prompt.strip()


def tempo_from_prompt(prompt: str) -> float | None:
    """The BPM a prompt states ("... at 90 bpm"), or None; captions in training state it so."""
    match = _BPM_IN_TEXT.search(prompt)
    if match is None:
        return None
    bpm = float(match.group(1))
    return bpm if MIN_BPM <= bpm <= MAX_BPM else None


def check_bpm(bpm: float | None) -> float | None:
    """`bpm` as a float within [MIN_BPM, MAX_BPM], or None."""
    if bpm is None:
        return None
    if not _is_number(bpm) or not MIN_BPM <= bpm <= MAX_BPM:
        raise EngineError(f"bpm must be a number from {MIN_BPM:g} to {MAX_BPM:g}, got {bpm!r}")
    return float(bpm)


def resolve_seconds(seconds: float | None, bars: float | None, bpm: float | None,
                    beats_per_bar: int, max_seconds: float) -> float:
    """The output length in seconds, from `seconds` or from `bars` at `bpm`.

    Args:
        seconds: the length asked for, or None when `bars` is given.
        bars: a length in bars (needs `bpm`): bars * beats_per_bar * 60 / bpm seconds.
        bpm: the tempo (already checked), for bars.
        beats_per_bar: beats in one bar (4 in 4/4).
        max_seconds: the longest output the model can make.
    """
    if seconds is not None and bars is not None:
        raise EngineError("give the length as seconds or as bars, not both")
    if isinstance(beats_per_bar, bool) or not isinstance(beats_per_bar, int) \
            or beats_per_bar < 1:
        raise EngineError(f"beats_per_bar must be a positive integer, got {beats_per_bar!r}")
    if bars is not None:
        if not _is_number(bars) or bars <= 0:
            raise EngineError(f"bars must be a positive number, got {bars!r}")
        if bpm is None:
            raise EngineError("a length in bars needs a tempo: give bpm (or state it in the "
                              "prompt, e.g. \"90 bpm\")")
        seconds = bars * beats_per_bar * 60.0 / bpm
    if seconds is None:
        raise EngineError("give the length: seconds, or bars and bpm")
    if not _is_number(seconds) or seconds <= 0:
        raise EngineError(f"seconds must be a positive number, got {seconds!r}")
    if seconds > max_seconds + 1e-9:
        raise EngineError(f"{seconds:g} s is longer than this model can generate "
                          f"(at most {max_seconds:g} s)")
    return float(seconds)


def open_midi_file(path: str | Path) -> mido.MidiFile:
    """A MIDI file parsed by mido, refused unread above MAX_MIDI_BYTES.

    Raises:
        EngineError: a missing, too large or unreadable file (the message names it).
    """
    path = Path(path)
    if not path.is_file():
        raise EngineError(f"no such melody file: {path}")
    size = path.stat().st_size
    if size > MAX_MIDI_BYTES:  # mido parses the whole file up front: refuse before reading
        raise EngineError(f"MIDI file too large ({size} bytes, at most {MAX_MIDI_BYTES}): "
                          f"{path}")
    try:
        midi = mido.MidiFile(path)
        if not 0 < midi.ticks_per_beat < 0x8000:  # 0 divides by zero; SMPTE runs backwards
            raise ValueError(f"unsupported time division {midi.ticks_per_beat}")
        if midi.type == 2:  # asynchronous tracks have no common time line
            raise ValueError("type 2 (asynchronous tracks) is not supported")
    except Exception as e:  # mido raises OSError, EOFError, ValueError, KeySignatureError, ...
        raise EngineError(f"not a readable MIDI file ({type(e).__name__}: {e}): {path}") from None
    return midi


def read_midi_notes(path: str | Path) -> list[Note]:
    """Every pitched note of a MIDI file (all tracks; the drum channel skipped), in seconds,
    sorted by onset. Bounded: reading stops after MAX_MIDI_NOTES notes or MAX_MIDI_SECONDS.

    A repeated note-on ends the sounding note; a note never switched off ends with the file.

    Raises:
        EngineError: a missing, too large or unreadable file (the message names it).
    """
    midi = open_midi_file(path)
    try:
        return _bounded_notes(midi)
    except Exception as e:  # a tempo of 0 and the like surface only while iterating
        raise EngineError(f"not a readable MIDI file ({type(e).__name__}: {e}): {path}") from None


def _bounded_notes(midi: mido.MidiFile) -> list[Note]:
    """The notes of a parsed MIDI file, read until MAX_MIDI_NOTES or MAX_MIDI_SECONDS."""
    now, sounding, notes = 0.0, {}, []
    for message in midi:  # merged tracks, .time in seconds (tempo changes applied)
        now += message.time
        if now > MAX_MIDI_SECONDS or len(notes) >= MAX_MIDI_NOTES:
            break
        if message.type not in ("note_on", "note_off") or message.channel == DRUM_CHANNEL:
            continue
        key = (message.channel, message.note)
        onset = sounding.pop(key, None)  # a repeated note-on ends the sounding one
        if onset is not None and now > onset:
            notes.append(Note(message.note, onset, now))
        if message.type == "note_on" and message.velocity > 0:
            sounding[key] = now
    end = min(now, MAX_MIDI_SECONDS)
    notes += [Note(pitch, onset, end) for (_, pitch), onset in sounding.items() if end > onset]
    return sorted(notes[:MAX_MIDI_NOTES], key=lambda n: (n.onset, n.pitch))


def read_midi_melody(path: str | Path) -> list[Note]:
    """The top line of a MIDI file's pitched notes (drum channel skipped), times in seconds.

    Raises:
        EngineError: a missing, too large, unreadable or note-less file.
    """
    line = top_line(read_midi_notes(path))
    if not line:
        raise EngineError(f"the MIDI file has no pitched notes to use as a melody: {path}")
    return line


def check_notes(notes: Sequence) -> list[Note]:
    """Notes given as Note or (pitch, onset, offset) triples, checked; their top line."""
    checked = []
    for index, note in enumerate(notes):
        try:
            pitch, onset, offset = note
            ok = float(pitch) == int(pitch) and 0 <= int(pitch) <= 127 \
                and math.isfinite(onset) and math.isfinite(offset) and 0 <= onset < offset
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise EngineError(f"melody note {index} is not (pitch 0-127, onset >= 0 s, "
                              f"offset > onset): {note!r}")
        checked.append(Note(int(pitch), float(onset), float(offset)))
    return top_line(checked)


def melody_chroma(melody: MelodySource | None, sample_rate: int, frame_rate: float,
                  num_frames: int) -> np.ndarray:
    """The one-hot chroma [12, num_frames] of a melody; zeros (no melody) for None.

    Args:
        melody: a MIDI file (.mid/.midi: its top line), any other audio file (chroma of the
            audio), a sequence of notes (times in seconds from the start of the output), or None.
        sample_rate: rate to read an audio melody at.
        frame_rate: the chroma frame rate (the codec's).
        num_frames: frames of the output; a longer melody is cut, a shorter one ends in silence.
    """
    if melody is None:
        return np.zeros((12, num_frames), dtype=np.float32)
    if isinstance(melody, (str, Path)):
        path = Path(melody)
        if path.suffix.lower() in MIDI_SUFFIXES:
            return notes_to_chroma(read_midi_melody(path), frame_rate, num_frames)
        audio = read_audio_input(path, sample_rate, "melody")  # [N]
        chroma = audio_to_chroma(audio, sample_rate, frame_rate)  # [12, T']
        fitted = np.zeros((12, num_frames), dtype=np.float32)
        fitted[:, :chroma.shape[1]] = chroma[:, :num_frames]
        return fitted
    if isinstance(melody, np.ndarray):
        raise EngineError("a melody is a MIDI file, an audio file or a list of notes, "
                          "not an array")
    return notes_to_chroma(check_notes(melody), frame_rate, num_frames)


def read_continuation(source: str | Path | np.ndarray, sample_rate: int) -> np.ndarray:
    """The clip to continue as float32 mono [N] at `sample_rate`.

    Args:
        source: an audio file (any rate and channel count), or samples [N] / [1, N] already at
            `sample_rate`.
    """
    if isinstance(source, (str, Path)):
        return read_audio_input(source, sample_rate, "clip to continue")
    audio = np.asarray(source)
    if audio.ndim == 2 and audio.shape[0] == 1:
        audio = audio[0]
    if audio.ndim != 1 or not np.issubdtype(audio.dtype, np.floating):
        raise EngineError(f"the clip to continue must be float mono samples [N], got "
                          f"{audio.dtype} {list(audio.shape)}")
    if not np.isfinite(audio).all():
        raise EngineError("the clip to continue has NaN or infinite samples")
    return audio.astype(np.float32)


def check_melody_file(path: str | Path) -> None:
    """The cheap checks of a melody file, before any model loads: a MIDI file is read (its
    reading is bounded), an audio file's header is checked. EngineError naming the file."""
    if Path(path).suffix.lower() in MIDI_SUFFIXES:
        read_midi_melody(path)
    else:
        check_audio_input(path, "melody")


def check_audio_input(path: str | Path, what: str) -> None:
    """An audio file handed in as `what` (a melody, a clip to continue), checked from its
    header: EngineError when missing, empty, not audio, truncated, or longer than
    MAX_AUDIO_INPUT_SECONDS (refused before decoding)."""
    try:
        seconds = audio_duration(path)
    except AudioFileError as e:
        raise EngineError(f"unreadable {what}: {e}") from None
    if seconds > MAX_AUDIO_INPUT_SECONDS:
        raise EngineError(f"the {what} is {seconds:.0f} s long, at most "
                          f"{MAX_AUDIO_INPUT_SECONDS:g} s: {path}")


def read_audio_input(path: str | Path, sample_rate: int, what: str) -> np.ndarray:
    """An audio file handed in as `what`, checked (check_audio_input) and read as float32
    mono [N] at `sample_rate`; EngineError naming the file when it cannot be."""
    check_audio_input(path, what)
    try:
        return read_audio(path, sample_rate)[0].numpy()
    except AudioFileError as e:  # damage inside a compressed stream shows only when decoding
        raise EngineError(f"unreadable {what}: {e}") from None


def _is_number(value: object) -> bool:
    """A finite real number (bool excluded)."""
    return isinstance(value, (int, float, np.number)) and not isinstance(value, bool) \
        and math.isfinite(value)
