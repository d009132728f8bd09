"""Atomic writes: the final name only ever holds a complete file."""

import json
import os

import pytest

from engine.atomic import atomic_path, write_bytes_atomic, write_json_atomic, write_text_atomic


class Boom(Exception):
    pass


def test_atomic_path_renames_on_success(tmp_path):
    final = tmp_path / "out.wav"
    with atomic_path(final) as tmp:
        assert tmp.parent == final.parent
        assert tmp.name.startswith(".out.wav.tmp-")
        assert tmp.suffix == ".wav"
        assert not tmp.exists()
        tmp.write_bytes(b"RIFF")
        assert not final.exists()  # nothing visible under the final name yet
    assert final.read_bytes() == b"RIFF"
    assert os.listdir(tmp_path) == ["out.wav"]


def test_temporary_names_differ(tmp_path):
    with atomic_path(tmp_path / "a.txt") as first, atomic_path(tmp_path / "a.txt") as second:
        assert first != second
        first.write_text("1")
        second.write_text("2")
    assert (tmp_path / "a.txt").read_text() in {"1", "2"}


def test_failure_removes_temp_and_keeps_old_file(tmp_path):
    final = tmp_path / "take.flac"
    final.write_bytes(b"old, complete")
    with pytest.raises(Boom), atomic_path(final) as tmp:
        tmp.write_bytes(b"new but half-wri")
        raise Boom
    assert final.read_bytes() == b"old, complete"
    assert os.listdir(tmp_path) == ["take.flac"]


def test_failure_before_anything_written_leaves_nothing(tmp_path):
    with pytest.raises(Boom), atomic_path(tmp_path / "x.json"):
        raise Boom
    assert os.listdir(tmp_path) == []


def test_keyboard_interrupt_also_cleans_up(tmp_path):
    with pytest.raises(KeyboardInterrupt), atomic_path(tmp_path / "x.bin") as tmp:
        tmp.write_bytes(b"partial")
        raise KeyboardInterrupt
    assert os.listdir(tmp_path) == []


def test_failing_rename_cleans_up(tmp_path):
    final = tmp_path / "occupied"
    (final / "child").mkdir(parents=True)  # a non-empty directory cannot be replaced by a file
    with pytest.raises(OSError), atomic_path(final) as tmp:
        tmp.write_bytes(b"data")
    assert sorted(os.listdir(tmp_path)) == ["occupied"]


def test_creates_parent_directories(tmp_path):
    final = tmp_path / "runs" / "a" / "b.bin"
    assert write_bytes_atomic(final, b"\x00\x01") == final
    assert final.read_bytes() == b"\x00\x01"


def test_replaces_existing_file(tmp_path):
    final = tmp_path / "notes.txt"
    final.write_text("old")
    write_text_atomic(final, "new")
    assert final.read_text() == "new"


def test_write_text_is_utf8_without_newline_translation(tmp_path):
    final = write_text_atomic(tmp_path / "t.txt", "caf\u00e9\n")
    assert final.read_bytes() == "caf\u00e9\n".encode()


def test_write_json_keeps_order_and_unicode(tmp_path):
    obj = {"zeta": 1, "alpha": ["\u266a", 2.5]}
    final = write_json_atomic(str(tmp_path / "m.json"), obj)
    text = final.read_text(encoding="utf-8")
    assert text.endswith("}\n")
    assert text.index("zeta") < text.index("alpha")
    assert "\u266a" in text  # not escaped as \\u266a
    assert '\n  "zeta"' in text  # indent=2
    assert json.loads(text) == obj


def test_write_json_indent(tmp_path):
    final = write_json_atomic(tmp_path / "m.json", {"a": 1}, indent=4)
    assert final.read_text() == '{\n    "a": 1\n}\n'


def test_unserialisable_json_leaves_old_file(tmp_path):
    final = tmp_path / "m.json"
    final.write_text("{}\n")
    with pytest.raises(TypeError):
        write_json_atomic(final, {"a": object()})
    assert final.read_text() == "{}\n"
    assert os.listdir(tmp_path) == ["m.json"]
