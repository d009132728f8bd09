"""Presets: the shipped ones load; mistakes name the file and the key; `indie render`."""

import argparse
import json

import pytest
import soundfile as sf

from bridge.cli import main
from bridge.commands import render
from bridge.presets import load_preset, load_preset_file
from bridge.settings import Settings
from engine.config import ConfigError
from tests.bridge.conftest import ROOT

SHIPPED = sorted((ROOT / "presets").glob("*.yaml"))


def test_at_least_five_presets_ship_and_all_load():
    assert len(SHIPPED) >= 5
    for path in SHIPPED:
        preset = load_preset_file(path)
        settings = preset.apply(Settings())
        assert settings.prompt.startswith(preset.prompt)
        preset.melody_notes()  # a melody file, where named, exists and reads


@pytest.mark.parametrize(("text", "key", "words"), [
    ("prompt: x\nseconds: 4\ntempo: 90\n", "tempo", "unknown key"),
    ("prompt: x\nseconds: four\n", "seconds", "expected"),
    ("prompt: x\nseconds: 4\ntemperature: 0\n", "temperature", "must be in"),
    ("prompt: x\nseconds: 4\nbars: 2\n", "seconds", "exactly one"),
    ("prompt: ''\nseconds: 4\n", "prompt", "non-empty"),
    ("prompt: x\nseconds: 4\nmelody: ../../etc/passwd\n", "melody", "leaves the folder"),
    ("prompt: x\nseconds: 4\ncc: {1: volume}\n", "cc.1", "temperature"),
    ("prompt: x\nseconds: 4\nformat: mp3\n", "format", "wav"),
    ("prompt: x\nseconds: 4\nsource: /tmp\n", "source", "unknown key"),
])
def test_mistakes_name_the_file_and_the_key(tmp_path, text, key, words):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as error:
        load_preset_file(path)
    message = str(error.value)
    assert str(path) in message and key in message and words in message


def test_presets_by_name_stay_in_their_folder(tmp_path):
    (tmp_path / "inside").mkdir()
    (tmp_path / "outside.yaml").write_text("prompt: x\nseconds: 1\n")
    with pytest.raises(ConfigError, match="leaves the folder"):
        load_preset(tmp_path / "inside", "../outside")
    with pytest.raises(ConfigError, match="no preset named"):
        load_preset(tmp_path / "inside", "missing")


def test_render_writes_each_variation_with_a_sidecar(tmp_path, fake_engine, capsys):
    fake_engine.step_seconds = 0.0
    args = argparse.Namespace(presets=[ROOT / "presets" / "church-organ.yaml",
                                       ROOT / "presets" / "folk-tune.yaml"],
                              variations=2, out=tmp_path / "renders")
    assert render.run(args, engine=fake_engine) == 0
    wavs = sorted((tmp_path / "renders").glob("*.wav"))
    assert [p.name for p in wavs] == ["church-organ-000-s7.wav", "church-organ-001-s8.wav",
                                      "folk-tune-000-s100.wav", "folk-tune-001-s101.wav"]
    organ = sf.read(wavs[0])[0]
    assert len(organ) == round(4 * 4 * 60 / 66 * 32000)  # 4 bars of 4/4 at 66 BPM
    meta = json.loads(wavs[2].with_suffix(".json").read_text())
    assert meta["seed"] == 100 and meta["params"]["melody"][0] == [64, 0.0, 0.6]
    assert "4/4" in capsys.readouterr().err  # the progress bar


def test_render_with_a_bad_preset_is_a_message(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("prompt: x\nsecs: 4\n")
    assert main(["render", str(bad), "--out", str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert "bad.yaml" in error and "secs" in error and "Traceback" not in error
