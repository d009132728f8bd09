"""`indie eval lm` end to end on tiny random models and a tiny dataset with melodies."""

import json
from pathlib import Path

import numpy as np
import pytest

from bridge.cli import main
from engine.audio import write_audio
from engine.data.captions import ClipLabels
from engine.data.manifest import SPLITS, ClipRow, write_manifest
from engine.evaluation.lm_eval import SETS, LMEvalConfig, evaluate_lm, select_items
from engine.evaluation.tagger import Tagger, TaggerConfig, export_tagger
from engine.melody import Note
from tests.engine.evaluation.synth import RATE, beat_melody, render_notes
from tests.tiny_engine import export_tiny_weights, tiny_engine

FAMILIES = ("piano", "strings")
TINY_TAGGER = TaggerConfig(channels=(4, 8), embedding_dim=8,
                           classes={"family": FAMILIES, "tempo": ("slow", "moderate", "fast"),
                                    "mode": ("major", "minor"), "style": ("chorale", "reel")})


def write_melody_dataset(folder: Path, clips: int = 6, seconds: float = 1.5) -> Path:
    """Clips of rendered melodies (two per piece) with captions, labels, melodies and BPMs."""
    for split in SPLITS:
        rows = []
        for index in range(clips):
            bpm = 80 + 20 * index
            notes = beat_melody([60 + index, 64 + index, 67 + index], bpm, seconds)
            name = f"{split}{index}"
            write_audio(folder / "audio" / f"{name}.flac", render_notes(notes, seconds), RATE)
            labels = ClipLabels(FAMILIES[index % 2], "players", (), bpm,
                                "moderate", "C major", ("major", "minor")[index % 2], "4/4",
                                "chorale", "", "bach", "soft", 0)
            rows.append(ClipRow(name, f"audio/{name}.flac", seconds, split, f"p{index // 2}",
                                seconds * (index % 2), f"{FAMILIES[index % 2]} at {bpm} bpm",
                                labels, tuple(notes), None))
        write_manifest(folder / f"{split}.jsonl", rows)
    return folder


@pytest.fixture(scope="module")
def melody_dataset(tmp_path_factory) -> Path:
    return write_melody_dataset(tmp_path_factory.mktemp("melodies"))


def test_items_are_spread_over_the_split_and_keep_a_reference_set(melody_dataset):
    from engine.data.manifest import read_manifest

    rows = read_manifest(melody_dataset / "test.jsonl")
    items = select_items(rows, 3, 1.0)
    assert [i.row.id for i in items] == ["test0", "test2", "test5"]
    assert all(note.offset <= 1.0 for item in items for note in item.melody)
    with pytest.raises(ValueError):
        select_items(rows, 5, 1.0)  # only one clip would be left for the FD reference


def test_evaluate_lm_reports_every_set(melody_dataset):
    config = LMEvalConfig(clips=3, seconds=1.0, pitch=False)
    result = evaluate_lm(tiny_engine(), Tagger(TINY_TAGGER), melody_dataset / "test.jsonl",
                         config)
    assert set(result["sets"]) == set(SETS)
    assert result["reference_clips"] == 3
    real, model = result["sets"]["real"], result["sets"]["model"]
    # Rendered melodies are what the chroma of the real clips shows; random codes are not.
    assert real["melody"]["chroma_similarity"] > 0.8
    assert model["melody"]["chroma_similarity"] < real["melody"]["chroma_similarity"]
    assert real["kl"]["clips"] == 3  # every chosen clip has a partner of the same piece
    for name in SETS:
        assert result["sets"][name]["fd"] >= 0
        assert 0 <= result["sets"][name]["text_adherence"]["all"] <= 1
    assert "real_time_factor" in model and "real_time_factor" not in real


def test_eval_lm_command_writes_every_key(melody_dataset, tmp_path, capsys):
    codec, lm = export_tiny_weights(tmp_path)
    tagger = export_tagger(Tagger(TINY_TAGGER), tmp_path / "tagger.safetensors", {})
    out = tmp_path / "lm.json"
    code = main(["eval", "lm", "--codec", str(codec), "--lm", str(lm), "--tagger", str(tagger),
                 "--dataset", str(melody_dataset), "--clips", "2", "--seconds", "1",
                 "--json", str(out)])
    assert code == 0
    result = json.loads(out.read_text())
    assert set(result) >= {"config", "manifest", "clips", "reference_clips", "sets",
                           "melody_effect", "notes", "weights"}
    assert set(result["weights"]) == {"codec", "lm", "tagger"}
    for name in SETS:
        numbers = result["sets"][name]
        assert set(numbers) >= {"fd", "kl", "text_adherence", "melody", "tempo", "rms_db"}
        assert set(numbers["text_adherence"]) == {"family", "mode", "tempo", "all"}
        assert set(numbers["tempo"]) == {"strict", "octave", "octave_errors",
                                         "median_relative_error", "estimated_bpm"}
        melody = numbers["melody"]
        assert melody["chroma_similarity"] is not None
        crepe = not result["notes"]
        assert ("raw_pitch_accuracy" in melody) == crepe
        assert np.isfinite(numbers["kl"]["mean"])
    effect = result["melody_effect"]
    assert effect["difference"] == pytest.approx(effect["chroma_with_melody"]
                                                 - effect["chroma_without_melody"])
    assert '"model"' in capsys.readouterr().out


def test_melody_dataset_melodies_are_the_rendered_notes(melody_dataset):
    from engine.data.manifest import read_manifest

    row = read_manifest(melody_dataset / "test.jsonl")[0]
    assert row.melody[0] == Note(60, 0.0, 0.75)
