"""Hostile and broken preset files: each refused with a message naming the file and the key, as
ConfigError in Python, `/indie/error <id> bad_preset ...` over OSC, and one line with exit code 2
from `indie render`. YAML bombs are refused before anything is expanded."""

import argparse
import os
import time

import mido
import pytest

from bridge.cli import main
from bridge.commands import render
from bridge.osc.addresses import parse_message
from bridge.presets import load_preset, load_preset_file
from bridge.safe_yaml import DEFAULT_LIMITS
from engine.config import ConfigError
from engine.inputs import MAX_MIDI_BYTES
from tests.bridge.conftest import ROOT

GOOD = "prompt: a folk band\nseconds: 4\n"


def billion_laughs(levels: int = 9) -> str:
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, levels)]
    return "prompt: x\nseconds: 4\ncc: {" + ", ".join(
        line.replace(f"a{i}:", f"{i}:", 1) for i, line in enumerate(lines)) + "}\n"


def refused(path, *words):
    """Load `path`; assert a ConfigError naming the file and each of `words`."""
    started = time.perf_counter()
    with pytest.raises(ConfigError) as error:
        load_preset_file(path)
    message = str(error.value)
    assert str(path) in message, message
    for word in words:
        assert word in message, message
    return message, time.perf_counter() - started


def write_midi(path, notes, ticks_per_beat=480):
    track = mido.MidiTrack()
    for pitch in notes:
        track += [mido.Message("note_on", note=pitch, velocity=90, time=0),
                  mido.Message("note_off", note=pitch, time=ticks_per_beat)]
    midi = mido.MidiFile(ticks_per_beat=ticks_per_beat)
    midi.tracks.append(track)
    midi.save(path)
    return path


@pytest.mark.parametrize(("text", "words"), [
    ("prompt: [unclosed\nseconds: 4\n", ("invalid YAML",)),
    ("prompt: x\n\tseconds: 4\n", ("invalid YAML",)),
    ("prompt: x\nseconds: 4\nseconds: 8\n", ("'seconds'", "twice")),
    ("- prompt\n- seconds\n", ("mapping",)),
    ("just words\n", ("mapping",)),
    ("", ("prompt", "missing")),
    ("prompt: !!python/object/apply:os.system ['true']\nseconds: 4\n", ("invalid YAML",)),
    ("prompt: 5\nseconds: 4\n", ("'prompt'", "str")),
    ("prompt: x\nseconds: 4\nseed: 1.5\n", ("'seed'", "int")),
    ("prompt: x\nseconds: 4\nvariations: true\n", ("'variations'", "int")),
    ("prompt: x\nseconds: .nan\n", ("'seconds'",)),
    ("prompt: x\nseconds: .inf\n", ("'seconds'",)),
    ("prompt: x\nseconds: 2001-12-14\n", ("'seconds'",)),
    ("prompt: x\nseconds: 4\nseed: 99999999999999999999999\n", ("'seed'",)),
    ("prompt: x\nseconds: 4\nbpm: -90\n", ("'bpm'",)),
    ("prompt: x\nseconds: 4\ncc: [1, 2]\n", ("'cc'", "mapping")),
    ("prompt: x\nseconds: 4\ncc: {one: cfg}\n", ("'cc.one'", "int")),
    ("prompt: x\nseconds: 4\ncc: {300: cfg}\n", ("'cc.300'", "0..127")),
    ("prompt: x\nseconds: 4\nname: another-preset\n", ("'name'", "unknown key")),
    ("prompt: x\nseconds: 4\nmelodie: a.mid\n", ("'melodie'", "did you mean 'melody'")),
])
def test_malformed_yaml_wrong_types_and_unknown_keys(tmp_path, text, words):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    refused(path, *words)


def test_a_huge_file_is_refused_before_it_is_read(tmp_path):
    path = tmp_path / "huge.yaml"
    path.write_text(GOOD + "# " + "x" * DEFAULT_LIMITS.max_bytes + "\n")
    refused(path, "too large")
    sparse = tmp_path / "sparse.yaml"
    with open(sparse, "wb") as file:
        file.truncate(1 << 30)  # 1 GiB that would take seconds to read
    _, seconds = refused(sparse, "too large")
    assert seconds < 0.5


def test_a_file_just_under_the_limit_loads(tmp_path):
    path = tmp_path / "long.yaml"
    padding = DEFAULT_LIMITS.max_bytes - len(GOOD) - 3
    path.write_text(GOOD + "#" + "x" * padding + "\n")
    assert load_preset_file(path).prompt == "a folk band"


def test_yaml_bombs_are_refused_fast_without_expanding(tmp_path):
    path = tmp_path / "bomb.yaml"
    path.write_text(billion_laughs())  # 9**9 = 387 million strings if expanded
    _, seconds = refused(path, "anchors", "not allowed")
    assert seconds < 0.1
    alias_only = tmp_path / "alias.yaml"
    alias_only.write_text(GOOD + "key: *missing\n")
    refused(alias_only)
    deep = tmp_path / "deep.yaml"
    deep.write_text(GOOD + "key: " + "[" * 20000 + "]" * 20000 + "\n")  # Python's recursion
    _, seconds = refused(deep, "nested")
    assert seconds < 0.5
    wide = tmp_path / "wide.yaml"
    wide.write_text(GOOD + "key: [" + ",".join(["1"] * 30000) + "]\n")
    refused(wide, "values")


@pytest.mark.parametrize("data", [
    "prompt: caf\xe9\nseconds: 4\n".encode("latin-1"),
    GOOD.encode("utf-16"),
    b"prompt: x\nseconds: 4\n\xff\xfe\x00\x01",
])
def test_non_utf8_bytes_are_refused(tmp_path, data):
    path = tmp_path / "latin.yaml"
    path.write_bytes(data)
    refused(path, "UTF-8")


def test_control_characters_are_refused(tmp_path):
    path = tmp_path / "nul.yaml"
    path.write_bytes(b"prompt: a\x00b\nseconds: 4\n")
    refused(path, "invalid YAML")


# -- paths ----------------------------------------------------------------------------------

@pytest.fixture
def outside_midi(tmp_path):
    """A real MIDI file outside the presets folder."""
    return write_midi(tmp_path / "secret.mid", [60, 62])


@pytest.fixture
def presets(tmp_path):
    folder = tmp_path / "presets"
    (folder / "melodies").mkdir(parents=True)
    return folder


@pytest.mark.parametrize("melody", ["../secret.mid", "melodies/../../secret.mid",
                                    "ABSOLUTE", "~/secret.mid", "C:/secret.mid", ""])
def test_a_melody_outside_the_presets_folder_is_refused(presets, outside_midi, melody):
    melody = str(outside_midi) if melody == "ABSOLUTE" else melody
    path = presets / "p.yaml"
    path.write_text(GOOD + f"melody: '{melody}'\n")
    if melody == "":
        assert load_preset_file(path).melody_notes() == []  # no melody at all
        return
    refused(path, "'melody'")


def test_a_symlinked_melody_or_preset_that_leads_outside_is_refused(presets, outside_midi,
                                                                     tmp_path):
    (presets / "melodies" / "link.mid").symlink_to(outside_midi)
    path = presets / "p.yaml"
    path.write_text(GOOD + "melody: melodies/link.mid\n")
    refused(path, "'melody'", "leaves the folder")
    (presets / "melodies" / "dir-link").symlink_to(tmp_path)
    path.write_text(GOOD + "melody: melodies/dir-link/secret.mid\n")
    refused(path, "'melody'", "leaves the folder")
    outside_preset = tmp_path / "elsewhere.yaml"
    outside_preset.write_text(GOOD)
    (presets / "linked.yaml").symlink_to(outside_preset)
    with pytest.raises(ConfigError, match="leaves the folder"):
        load_preset(presets, "linked")


def test_a_melody_inside_the_folder_loads(presets):
    write_midi(presets / "melodies" / "tune.mid", [60, 64, 67])
    path = presets / "p.yaml"
    path.write_text(GOOD + "melody: melodies/tune.mid\n")
    assert [n.pitch for n in load_preset_file(path).melody_notes()] == [60, 64, 67]


# -- melody files ---------------------------------------------------------------------------

def broken_midi(kind: str, path):
    good = (ROOT / "presets" / "melodies" / "ode-to-joy.mid").read_bytes()
    if kind == "missing":
        return
    if kind == "directory":
        path.mkdir()
        return
    data = {"empty": b"", "random": os.urandom(500), "text": b"not midi at all\n",
            "truncated": good[: len(good) // 2], "header only": good[:14],
            "zero division": good[:12] + b"\x00\x00" + good[14:],
            "smpte": good[:12] + b"\xe7\x28" + good[14:],
            "huge": good + b"\x00" * MAX_MIDI_BYTES}[kind]
    path.write_bytes(data)


@pytest.mark.parametrize("kind", ["missing", "directory", "empty", "random", "text",
                                  "truncated", "header only", "zero division", "smpte", "huge"])
def test_a_broken_melody_file_names_the_preset_and_the_key(presets, kind):
    broken_midi(kind, presets / "melodies" / "tune.mid")
    path = presets / "p.yaml"
    path.write_text(GOOD + "melody: melodies/tune.mid\n")
    started = time.perf_counter()
    with pytest.raises(ConfigError) as error:
        load_preset_file(path).melody_notes()
    message = str(error.value)
    assert str(path) in message and "'melody'" in message and "tune.mid" in message
    assert time.perf_counter() - started < 1.0  # a huge file is refused unread


# -- the bridge and the CLI -----------------------------------------------------------------

@pytest.mark.parametrize("content", [billion_laughs(), "prompt: [\n", "prompt: x\nsecs: 4\n",
                                     GOOD + "melody: ../../etc/passwd\n",
                                     GOOD + "melody: melodies/missing.mid\n"])
def test_over_osc_a_bad_preset_is_an_error_reply(session, folders, replies, content):
    (folders.presets / "bad.yaml").write_text(content)
    session.handle(parse_message("/indie/render", ["bad", "r1"]), None)
    job_id, code, message = replies.wait("/indie/error")
    assert code == "bad_preset" and "bad.yaml" in message
    if "melody:" in content:
        assert "'melody'" in message
    session.handle(parse_message("/indie/preset", ["bad"]), None)
    session.handle(parse_message("/indie/ping", []), None)
    replies.wait("/indie/pong")  # still serving


@pytest.mark.parametrize("content", [billion_laughs(), "prompt: caf\xe9\n", "x" * 70000,
                                     GOOD + "melody: /etc/passwd\n",
                                     GOOD + "melody: missing.mid\n"])
def test_indie_render_prints_one_line_and_exits_2(tmp_path, capsys, content):
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(content.encode("latin-1"))
    assert main(["render", str(bad), "--out", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "bad.yaml" in error and "Traceback" not in error
    assert not (tmp_path / "out").exists()


def test_a_bad_melody_stops_the_batch_before_anything_renders(tmp_path, fake_engine):
    fake_engine.step_seconds = 0.0
    bad = tmp_path / "bad.yaml"
    bad.write_text(GOOD + "melody: missing.mid\n")
    args = argparse.Namespace(presets=[ROOT / "presets" / "church-organ.yaml", bad],
                              variations=1, out=tmp_path / "renders")
    with pytest.raises(ConfigError, match="'melody'"):
        render.run(args, engine=fake_engine)
    assert not fake_engine.calls and not list(tmp_path.glob("renders/*"))
