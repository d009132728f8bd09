"""Broken, hostile and huge files handed to the engine: MIDI and audio melodies, clips to
continue, and weights. Each is an EngineError (or WeightsError) naming the file, bounded in time
and size; `indie generate` prints one line and exits 2. Nothing is ever unpickled."""

import io
import json
import random
import re
import struct
import time
from pathlib import Path

import mido
import numpy as np
import pytest
import soundfile as sf
import torch

from bridge.cli import main
from engine.inputs import (
    MAX_AUDIO_INPUT_SECONDS,
    MAX_MIDI_BYTES,
    MAX_MIDI_NOTES,
    MAX_MIDI_SECONDS,
    EngineError,
    melody_chroma,
    read_continuation,
    read_midi_melody,
    read_midi_notes,
)
from engine.weights import WeightsError, load_codec, manifest_path, read_checkpoint, sha256_of
from tests.tiny_engine import export_tiny_weights

ROOT = Path(__file__).resolve().parents[2]
ODE = (ROOT / "presets" / "melodies" / "ode-to-joy.mid").read_bytes()
RATE = 32000


def midi_bytes(notes, ticks_per_beat=480, delta=480, meta=()) -> bytes:
    track = mido.MidiTrack(list(meta))
    for pitch in notes:
        track += [mido.Message("note_on", note=pitch, velocity=90, time=0),
                  mido.Message("note_off", note=pitch, time=delta)]
    midi = mido.MidiFile(ticks_per_beat=ticks_per_beat)
    midi.tracks.append(track)
    buffer = io.BytesIO()
    midi.save(file=buffer)
    return buffer.getvalue()


def bad_key_signature() -> bytes:
    data = bytearray(midi_bytes([60], meta=[mido.MetaMessage("key_signature", key="C")]))
    data[data.find(b"\xff\x59\x02") + 3] = 20  # 20 sharps: mido raises KeySignatureError
    return bytes(data)


BROKEN_MIDI = {
    "empty": b"", "text": b"just some words\n", "random": random.Random(0).randbytes(700),
    "truncated": ODE[: len(ODE) // 2], "header only": ODE[:14],
    "no track data": ODE[:22],
    "ticks per beat 0": ODE[:12] + b"\x00\x00" + ODE[14:],  # ZeroDivisionError inside mido
    "SMPTE time": ODE[:12] + b"\xe7\x28" + ODE[14:],  # negative times
    "type 2": ODE[:9] + b"\x02" + ODE[10:],
    "bad key signature": bad_key_signature(),
    "track length lies": ODE[:18] + b"\xff\xff\xff\xf0" + ODE[22:],
    "only drums": midi_bytes([36]).replace(b"\x90", b"\x99").replace(b"\x80", b"\x89"),
}


@pytest.mark.parametrize("kind", sorted(BROKEN_MIDI))
def test_a_broken_midi_melody_is_an_engine_error_naming_the_file(tmp_path, kind):
    path = tmp_path / "melody.mid"
    path.write_bytes(BROKEN_MIDI[kind])
    for read in (read_midi_melody, lambda p: melody_chroma(p, RATE, 50.0, 100)):
        with pytest.raises(EngineError, match=re.escape(str(path))):
            read(path)


def test_a_missing_or_directory_melody_is_an_engine_error(tmp_path):
    with pytest.raises(EngineError, match="no such melody file"):
        read_midi_melody(tmp_path / "nowhere.mid")
    (tmp_path / "folder.mid").mkdir()
    with pytest.raises(EngineError, match="folder.mid"):
        melody_chroma(tmp_path / "folder.mid", RATE, 50.0, 100)


def test_mutated_midi_files_give_sane_notes_or_an_engine_error(tmp_path):
    """500 copies of a real file with cut ends, flipped bytes and changed header fields."""
    rng = random.Random(1)
    path = tmp_path / "fuzz.mid"
    outcomes = {"notes": 0, "refused": 0}
    for _ in range(500):
        data = bytearray(ODE)
        for _ in range(rng.randint(1, 6)):
            data[rng.randrange(8, len(data))] = rng.randrange(256)
        if rng.random() < 0.3:
            data = data[: rng.randrange(len(data))]
        path.write_bytes(bytes(data))
        started = time.perf_counter()
        try:
            notes = read_midi_notes(path)
        except EngineError as error:
            assert str(path) in str(error)
            outcomes["refused"] += 1
            continue
        finally:
            assert time.perf_counter() - started < 1.0
        outcomes["notes"] += 1
        assert len(notes) <= MAX_MIDI_NOTES
        for note in notes:
            assert 0 <= note.pitch <= 127 and 0 <= note.onset < note.offset <= MAX_MIDI_SECONDS
    assert outcomes["notes"] > 0 and outcomes["refused"] > 0


def test_a_huge_midi_file_is_refused_unread(tmp_path):
    path = tmp_path / "huge.mid"
    path.write_bytes(ODE + b"\x00" * MAX_MIDI_BYTES)
    started = time.perf_counter()
    with pytest.raises(EngineError, match="too large"):
        read_midi_melody(path)
    assert time.perf_counter() - started < 0.1


def test_the_notes_read_are_bounded_in_count_and_time(tmp_path):
    many = tmp_path / "many.mid"
    many.write_bytes(midi_bytes([40 + i % 40 for i in range(20_000)], delta=60))
    assert many.stat().st_size <= MAX_MIDI_BYTES
    started = time.perf_counter()
    notes = read_midi_notes(many)
    print(f"\n20,000-note MIDI file ({many.stat().st_size} bytes): {len(notes)} notes read in "
          f"{time.perf_counter() - started:.2f} s")
    assert len(notes) == MAX_MIDI_NOTES
    late = tmp_path / "late.mid"
    late.write_bytes(midi_bytes([60, 62, 64], delta=0x0FFFFFFF))  # days between notes
    notes = read_midi_notes(late)
    assert notes and all(n.offset <= MAX_MIDI_SECONDS for n in notes)


def test_a_note_without_note_off_ends_with_the_file(tmp_path):
    track = mido.MidiTrack([mido.Message("note_on", note=60, velocity=90, time=0),
                            mido.Message("note_on", note=64, velocity=90, time=480),
                            mido.Message("note_off", note=64, time=480)])
    midi = mido.MidiFile(ticks_per_beat=480)
    midi.tracks.append(track)
    path = tmp_path / "stuck.mid"
    midi.save(path)
    notes = read_midi_notes(path)  # 120 BPM: a beat is 0.5 s
    assert [(n.pitch, n.onset, n.offset) for n in notes] == [(60, 0.0, 1.0), (64, 0.5, 1.0)]


# -- audio ----------------------------------------------------------------------------------

def write_wav(path: Path, seconds: float, rate: int = RATE) -> Path:
    t = np.arange(int(seconds * rate)) / rate
    sf.write(path, (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), rate)
    return path


def broken_audio(kind: str, path: Path) -> None:
    if kind == "directory":
        path.mkdir()
        return
    if kind == "missing":
        return
    if kind == "nan samples":
        sf.write(path, np.full(100, np.nan, np.float32), RATE, subtype="FLOAT")
        return
    good = write_wav(path, 0.5).read_bytes()
    data = {"empty": b"", "text": b"this is not audio\n" * 20, "random": bytes(range(256)) * 8,
            "truncated": good[: len(good) // 2], "header only": good[:44],
            "midi named .wav": ODE}[kind]
    path.write_bytes(data)


AUDIO_KINDS = ["missing", "directory", "empty", "text", "random", "truncated", "header only",
               "midi named .wav", "nan samples"]


@pytest.mark.parametrize("kind", AUDIO_KINDS)
def test_a_broken_audio_melody_or_clip_is_an_engine_error_naming_the_file(tmp_path, kind):
    path = tmp_path / "input.wav"
    broken_audio(kind, path)
    with pytest.raises(EngineError, match=re.escape(str(path))) as melody_error:
        melody_chroma(path, RATE, 50.0, 100)
    assert "melody" in str(melody_error.value)
    with pytest.raises(EngineError, match=re.escape(str(path))) as clip_error:
        read_continuation(path, RATE)
    assert "clip to continue" in str(clip_error.value)


def test_a_too_long_audio_input_is_refused_from_its_header(tmp_path):
    path = write_wav(tmp_path / "long.wav", MAX_AUDIO_INPUT_SECONDS + 1, rate=1000)
    for read in (lambda: melody_chroma(path, RATE, 50.0, 100), lambda: read_continuation(path,
                                                                                         RATE)):
        started = time.perf_counter()
        with pytest.raises(EngineError, match="at most"):
            read()
        assert time.perf_counter() - started < 0.5  # not decoded, not resampled


# -- weights --------------------------------------------------------------------------------

@pytest.fixture
def weights(tmp_path):
    return export_tiny_weights(tmp_path)


def corrupt(path: Path, how: str, *, update_manifest: bool) -> None:
    data = path.read_bytes()
    header = struct.unpack("<Q", data[:8])[0]
    data = {"header": data[:8] + b"{not json" + data[17:],
            "header length": struct.pack("<Q", 1 << 62) + data[8:],
            "truncated": data[: 8 + header + (len(data) - 8 - header) // 2],
            "changed byte": data[:-1] + bytes([data[-1] ^ 0xFF])}[how]
    path.write_bytes(data)
    if update_manifest:  # a checksum proves only that the file is the one the manifest names
        manifest = manifest_path(path)
        meta = json.loads(manifest.read_text())
        meta["sha256"] = sha256_of(path)
        manifest.write_text(json.dumps(meta))


@pytest.mark.parametrize("how", ["header", "header length", "truncated", "changed byte"])
def test_corrupt_weights_are_refused_before_loading(weights, how):
    codec = weights[0]
    corrupt(codec, how, update_manifest=False)
    with pytest.raises(WeightsError, match="checksum"):
        load_codec(codec)


@pytest.mark.parametrize("how", ["header", "header length", "truncated"])
def test_corrupt_weights_with_a_matching_checksum_are_still_a_weights_error(weights, how):
    codec = weights[0]
    corrupt(codec, how, update_manifest=True)
    with pytest.raises(WeightsError, match="safetensors"):
        load_codec(codec)


def test_a_broken_manifest_or_one_that_does_not_fit_is_a_weights_error(weights):
    codec = weights[0]
    manifest = manifest_path(codec)
    meta = json.loads(manifest.read_text())
    manifest.write_text(json.dumps({**meta, "config": {**meta["config"], "base_channels": 8}}))
    with pytest.raises(WeightsError, match="does not fit"):
        load_codec(codec)
    manifest.write_text("{not json")
    with pytest.raises(WeightsError, match="JSON"):
        load_codec(codec)


def test_indie_generate_with_broken_inputs_prints_one_line_and_exits_2(weights, tmp_path,
                                                                       capsys):
    bad_midi = tmp_path / "bad.mid"
    bad_midi.write_bytes(BROKEN_MIDI["ticks per beat 0"])
    empty_wav = tmp_path / "empty.wav"
    empty_wav.write_bytes(b"")
    codec, lm = weights
    runs = [(["--melody", str(bad_midi)], "bad.mid"), (["--melody", str(empty_wav)], "empty.wav"),
            (["--continue", str(empty_wav)], "empty.wav")]
    for args, name in runs:
        code = main(["generate", "strings", "--seconds", "0.2", "-o", str(tmp_path / "o.wav"),
                     "--codec", str(codec), "--lm", str(lm), *args])
        error = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(error) == 1 and name in error[0], error
    corrupt(codec, "header", update_manifest=True)
    code = main(["generate", "strings", "--seconds", "0.2", "-o", str(tmp_path / "o.wav"),
                 "--codec", str(codec), "--lm", str(lm)])
    error = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(error) == 1 and "codec.safetensors" in error[0], error
    assert not (tmp_path / "o.wav").exists()


class _Exploit:
    ran = False

    def __reduce__(self):
        return (_Exploit._mark, ())

    @staticmethod
    def _mark():
        _Exploit.ran = True
        return "pwned"


def test_a_pickled_object_in_a_checkpoint_is_never_run(tmp_path):
    path = tmp_path / "checkpoint.pt"
    torch.save({"state_dict": {}, "payload": _Exploit()}, path)
    with pytest.raises(Exception, match="(?i)weights.only|unsupported global"):
        read_checkpoint(path)
    assert not _Exploit.ran


def test_no_code_unpickles_or_loads_unsafe_yaml():
    """Every torch.load (code and tests) passes weights_only=True; the code has no pickle.load,
    no unsafe yaml.load and no np.load with allow_pickle=True."""
    code = [*ROOT.glob("engine/**/*.py"), *ROOT.glob("bridge/**/*.py"),
            *ROOT.glob("scripts/**/*.py")]
    unsafe = (r"pickle\.loads?\(", r"allow_pickle\s*=\s*True", r"yaml\.(unsafe_load|full_load)\(",
              r"Loader\s*=\s*yaml\.(Unsafe|Full)?Loader\b")
    offenders = []
    for path in [*code, *ROOT.glob("tests/**/*.py")]:
        text = path.read_text(encoding="utf-8")
        for match in re.finditer(r"torch\.load\(([^()]|\([^()]*\))*\)", text):
            if "weights_only=True" not in match.group(0):
                offenders.append(f"{path}: {match.group(0)}")
        if path in code:
            offenders += [f"{path}: {pattern}" for pattern in unsafe if re.search(pattern, text)]
    assert offenders == []
