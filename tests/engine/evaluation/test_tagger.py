"""The tagger: learns a synthetic set, exports and reloads, and the shipped one beats chance."""

from pathlib import Path

import numpy as np
import pytest
import torch

from engine.audio import read_audio, write_audio
from engine.data.captions import ClipLabels
from engine.data.manifest import SPLITS, ClipRow, audio_path, read_manifest, write_manifest
from engine.evaluation.tagger import (
    DEFAULT_TAGGER,
    Tagger,
    TaggerConfig,
    export_tagger,
    load_tagger,
    tag_clips,
)
from engine.train.tagger_trainer import TaggerTrainConfig, train_tagger
from tests.engine.evaluation.synth import RATE, beat_melody, render_notes

TEST_SPLIT = Path(__file__).resolve().parents[3] / "data" / "indie-10h" / "test.jsonl"
TIMBRES = {"flute": (1.0,), "brass": (1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4)}  # partial amplitudes


def write_timbre_dataset(folder: Path, clips: int = 12, seconds: float = 2.0) -> Path:
    """Clips whose family is their timbre (pure vs rich tones), at varied pitches and tempi."""
    rng = np.random.default_rng(0)
    for split in SPLITS:
        rows = []
        for index in range(clips):
            family = tuple(TIMBRES)[index % 2]
            base = int(rng.integers(55, 75))
            notes = beat_melody([base, base + 4, base + 7], float(rng.integers(70, 140)),
                                seconds)
            audio = render_notes(notes, seconds, harmonics=TIMBRES[family])
            name = f"{split}{index}"
            write_audio(folder / "audio" / f"{name}.flac", audio, RATE)
            labels = ClipLabels(family, family, (), 100, "moderate", "C major",
                                "major", "4/4", "chorale", "", "bach", "soft", 0)
            rows.append(ClipRow(name, f"audio/{name}.flac", seconds, split, name, 0.0, "c",
                                labels, tuple(notes), None))
        write_manifest(folder / f"{split}.jsonl", rows)
    return folder


def test_training_learns_a_synthetic_label_far_above_chance(tmp_path):
    dataset = write_timbre_dataset(tmp_path / "data")
    config = TaggerTrainConfig(tagger=TaggerConfig(channels=(8, 16), embedding_dim=16),
                               minutes=2.0, max_steps=60, batch_size=8, crop_seconds=1.0,
                               learning_rate=1e-2)
    result = train_tagger(dataset, tmp_path / "out", config)
    family = result["scores"]["test"]["family"]
    assert family["majority"] == 0.5
    assert family["accuracy"] >= 0.9, family
    assert result["training"]["steps"] == 60
    tagger = load_tagger(tmp_path / "out" / "tagger.safetensors")
    assert tagger.config.classes["family"] == ("flute", "brass")  # the train split's order
    # the cache is reused: a second load reads the same features without recomputing
    assert list((dataset / "cache").glob("tagger-train-*.mels.npy"))


def test_export_and_load_round_trip(tmp_path):
    config = TaggerConfig(channels=(4, 8), embedding_dim=8,
                          classes={"family": ("a", "b", "c"), "mode": ("major", "minor")})
    tagger = Tagger(config).eval()
    path = export_tagger(tagger, tmp_path / "t.safetensors", {"note": "test"})
    loaded = load_tagger(path)
    assert loaded.config == config
    clip = np.random.default_rng(0).normal(0, 0.1, RATE).astype(np.float32)
    a, b = tag_clips(tagger, [clip], RATE), tag_clips(loaded, [clip], RATE)
    assert a.embeddings.shape == (1, 8) and a.probs["family"].shape == (1, 3)
    np.testing.assert_allclose(a.embeddings, b.embeddings, rtol=0.05, atol=0.02)  # fp16
    with pytest.raises(FileNotFoundError):
        load_tagger(tmp_path / "missing.safetensors")


def test_clips_of_any_length_and_rate_are_tagged():
    tagger = Tagger(TaggerConfig(channels=(4, 8), embedding_dim=8,
                                 classes={"mode": ("major", "minor")}))
    short = np.zeros(100, dtype=np.float32)  # shorter than the pooling stack: padded
    long = np.random.default_rng(0).normal(0, 0.1, 3 * 16000).astype(np.float32)
    result = tag_clips(tagger, [short, torch.from_numpy(long)], 16000)
    assert result.embeddings.shape == (2, 8)
    assert np.allclose(result.probs["mode"].sum(axis=1), 1.0)
    assert all(p in ("major", "minor") for p in result.predictions["mode"])


@pytest.mark.skipif(not (DEFAULT_TAGGER.is_file() and TEST_SPLIT.is_file()),
                    reason="needs the shipped tagger and data/indie-10h (indie dataset build)")
def test_shipped_tagger_beats_chance_on_the_test_split():
    """All 148 test clips (21 pieces never seen in training), whole 10-s clips through the
    inference path. Measured when shipped: family 0.973 (majority 0.176), tempo 0.784 (0.628),
    mode 0.824 (0.635), style 0.473 (0.196): margins of +0.80, +0.16, +0.19, +0.28 over the
    majority class, where the test asks for +0.6, +0.1, +0.1, +0.2."""
    tagger = load_tagger()
    rows = read_manifest(TEST_SPLIT)
    clips = [read_audio(audio_path(TEST_SPLIT, row))[0] for row in rows]
    result = tag_clips(tagger, clips, RATE)
    margins = {"family": 0.6, "tempo": 0.1, "mode": 0.1, "style": 0.2}
    for head, margin in margins.items():
        truth = [getattr(row.labels, head) for row in rows]
        accuracy = np.mean([p == t for p, t in zip(result.predictions[head], truth,
                                                   strict=True)])
        majority = max(truth.count(label) for label in set(truth)) / len(truth)
        assert accuracy >= majority + margin, (head, accuracy, majority)


def test_train_tagger_command_exports_weights_and_scores(tmp_path, capsys):
    from bridge.cli import main

    dataset = write_timbre_dataset(tmp_path / "data", clips=4, seconds=1.0)
    out = tmp_path / "out"
    assert main(["train", "tagger", "--dataset", str(dataset), "--out", str(out),
                 "--minutes", "1", "--steps", "2"]) == 0
    assert (out / "tagger.safetensors").is_file() and (out / "scores.json").is_file()
    assert load_tagger(out / "tagger.safetensors").config.classes["family"]
    assert "test family: accuracy" in capsys.readouterr().out
