"""End-to-end checks on the weights that ship in engine/weights/ (what a user gets)."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from engine import Engine
from engine.weights import DEFAULT_CODEC, DEFAULT_LM, WEIGHTS_DIR, load_codec, manifest_path

BUDGET_BYTES = 80 * 1000 * 1000


@pytest.fixture(scope="module")
def engine():
    return Engine.load()


def test_the_weights_fit_the_budget_and_carry_manifests():
    files = sorted(WEIGHTS_DIR.glob("*.safetensors"))
    assert DEFAULT_CODEC in files and DEFAULT_LM in files
    assert sum(f.stat().st_size for f in files) <= BUDGET_BYTES
    for weights in files:
        manifest = json.loads(manifest_path(weights).read_text())
        steps = manifest.get("steps") or manifest.get("training", {}).get("steps", 0)
        assert manifest["config"] and manifest["sha256"] and steps > 0, weights.name


def test_the_shipped_codec_streams_what_it_decodes():
    codec = load_codec()
    audio = 0.1 * torch.sin(torch.linspace(0, 2 * torch.pi * 440, 32000))[None, None]  # 1 s A4
    codes = codec.encode(audio)
    assert codes.shape == (1, 4, 50) and int(codes.max()) < codec.cardinality
    offline = codec.decode(codes)
    decoder = codec.stream_decoder(1)
    streamed = torch.cat([decoder.step(codes[..., i:i + 7]) for i in range(0, 50, 7)], dim=-1)
    assert (streamed - offline).abs().max() < 1e-4


def test_the_shipped_mmd_codec_is_less_dependent_than_its_baseline():
    mmd = json.loads(manifest_path(DEFAULT_CODEC).read_text())["evaluation"]
    baseline = json.loads(manifest_path(WEIGHTS_DIR / "codec-baseline.safetensors").read_text())
    baseline = baseline["evaluation"]
    ratio = mmd["mi_delay_aligned"]["mean_normalised"] / baseline["mi_delay_aligned"][
        "mean_normalised"]
    assert ratio <= 0.7
    assert mmd["mel_distance"] <= 1.1 * baseline["mel_distance"]
    for ours, theirs in zip(mmd["code_usage"]["entropy_bits"],
                            baseline["code_usage"]["entropy_bits"], strict=True):
        assert ours >= 0.9 * theirs


def test_the_shipped_engine_is_reproducible_and_streams_the_same_audio(engine):
    first = engine.generate("a string quartet playing a slow chorale in D minor", seconds=1.0,
                            bpm=70, seed=3)
    again = engine.generate("a string quartet playing a slow chorale in D minor", seconds=1.0,
                            bpm=70, seed=3)
    streamed = np.concatenate(list(engine.stream(
        "a string quartet playing a slow chorale in D minor", seconds=1.0, bpm=70, seed=3)))
    assert first.audio.shape == (32000,) and np.isfinite(first.audio).all()
    assert np.array_equal(first.audio, again.audio)
    assert np.allclose(streamed, first.audio, atol=1e-5)
    assert np.abs(first.audio).max() > 1e-3  # not silence


def test_indie_generate_writes_the_clip_and_its_sidecar(tmp_path):
    out = tmp_path / "take.wav"
    result = subprocess.run(
        [sys.executable, "-m", "bridge.cli", "generate", "a folk tune on a fiddle, 120 BPM",
         "-o", str(out), "--bars", "1", "--bpm", "120", "--seed", "1"],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    import soundfile

    audio, rate = soundfile.read(out)
    assert rate == 32000 and len(audio) == 64000  # one bar of 4/4 at 120 BPM: exactly 2 s
    sidecar = json.loads(out.with_suffix(".json").read_text())
    assert sidecar["params"]["seed"] == 1 and sidecar["params"]["bars"] == 1
    assert sidecar["samples"] == 64000 and "indie generate" in sidecar["command"]
