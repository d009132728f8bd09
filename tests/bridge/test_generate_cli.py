"""`indie generate` and `indie bench generate` as a user runs them (tiny exported weights)."""

import json
import shlex

import numpy as np
import pytest
import soundfile as sf

from bridge.cli import main
from engine.patterns import PATTERNS
from tests.tiny_engine import export_tiny_weights


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return export_tiny_weights(tmp_path_factory.mktemp("weights"))


def weight_args(weights):
    return ["--codec", str(weights[0]), "--lm", str(weights[1])]


def test_generate_writes_audio_and_a_sidecar_that_regenerates_it(weights, tmp_path, capsys):
    out = tmp_path / "take.wav"
    code = main(["generate", "warm strings, D minor", "-o", str(out), "--bars", "1",
                 "--bpm", "150", "--top-p", "0.9", *weight_args(weights)])
    assert code == 0
    audio, rate = sf.read(out, dtype="float32")
    assert rate == 32000 and len(audio) == round(4 * 60 / 150 * 32000)
    sidecar = json.loads((tmp_path / "take.json").read_text())
    params = sidecar["params"]
    assert isinstance(params["seed"], int) and params["bars"] == 1 and params["bpm"] == 150
    assert params["top_p"] == 0.9 and params["pattern"] == "delay"
    assert sidecar["samples"] == len(audio) and "take.json" in capsys.readouterr().out

    again = tmp_path / "again.wav"
    words = shlex.split(sidecar["command"])
    assert words[:2] == ["indie", "generate"]
    words[words.index("-o") + 1] = str(again)
    assert main(words[1:]) == 0
    assert again.read_bytes() == out.read_bytes()  # bit-identical
    other = tmp_path / "other.wav"
    seed = str(params["seed"] + 1)
    assert main(["generate", "warm strings, D minor", "-o", str(other), "--bars", "1",
                 "--bpm", "150", "--top-p", "0.9", "--seed", seed, *weight_args(weights)]) == 0
    assert not np.array_equal(sf.read(other, dtype="float32")[0], audio)


@pytest.mark.parametrize(("args", "message"), [
    (["", "--seconds", "1"], "prompt is empty"),
    (["strings", "--seconds", "0"], "positive"),
    (["strings", "--seconds", "100000"], "at most"),
    (["strings", "--seconds", "1", "--pattern", "zigzag"], "zigzag"),
    (["strings", "--seconds", "1", "--melody", "nowhere.mid"], "no such melody"),
])
def test_bad_input_is_a_message_and_no_file(weights, tmp_path, capsys, args, message):
    out = tmp_path / "take.wav"
    assert main(["generate", *args, "-o", str(out), *weight_args(weights)]) == 2
    error = capsys.readouterr().err
    assert "indie: error:" in error and message in error and "Traceback" not in error
    assert list(tmp_path.iterdir()) == []


def test_unwritable_suffix_fails_before_generating(tmp_path, capsys):
    assert main(["generate", "strings", "-o", str(tmp_path / "take.mp3")]) == 2
    assert ".wav or .flac" in capsys.readouterr().err and list(tmp_path.iterdir()) == []


def test_bench_generate_times_every_pattern(weights, tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert main(["bench", "generate", "--seconds", "0.2", "--json", str(out),
                 *weight_args(weights)]) == 0
    result = json.loads(out.read_text())
    assert set(result["patterns"]) == set(PATTERNS)
    for numbers in result["patterns"].values():
        assert numbers["steps"] > 0 and numbers["x_realtime"] > 0
        assert 0 < numbers["first_audio_ms"] <= 1000 * numbers["wall_s"]
        assert numbers["audio_s"] == pytest.approx(0.2)
        assert numbers["state_bytes"] > 0  # the KV cache, sized for the pattern's steps
    patterns = result["patterns"]
    assert patterns["flatten"]["steps"] == 4 * patterns["parallel"]["steps"]
    assert patterns["flatten"]["state_bytes"] > patterns["parallel"]["state_bytes"]
    assert 0 < result["weight_bytes_per_step"] < 4 * result["lm_parameters"]
    assert result["copy_bandwidth_gb_s"] > 0
    assert result["patterns"]["delay"]["fraction_of_bound"] > 0
    assert "flatten" in capsys.readouterr().out
