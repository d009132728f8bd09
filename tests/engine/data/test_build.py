"""Real builds: a few short pieces through music21, real FluidSynth and FLAC files."""

import hashlib
import json
import shutil
from collections import defaultdict

import numpy as np
import pytest
import soundfile

from engine.audio import read_audio
from engine.data.build import DatasetConfig, DatasetError, build_dataset, split_of
from engine.data.manifest import SPLITS, audio_path, read_manifest
from engine.melody import audio_to_chroma

pytestmark = pytest.mark.slow

TINY = DatasetConfig(clip_seconds=8.0, min_clip_seconds=4.0, max_piece_seconds=20.0,
                     splits=(0.4, 0.3, 0.3), sources=("bach", "essenFolksong", "oneills1850"))
SEED = 7
PIECES = 6


def manifests(folder):
    return {split: (folder / f"{split}.jsonl").read_text() for split in SPLITS}


def audio_digests(folder):
    """Digests of the clips the manifests name (workers may render a few pieces ahead)."""
    digests = {}
    for split in SPLITS:
        manifest = folder / f"{split}.jsonl"
        for row in read_manifest(manifest):
            digests[row.id] = hashlib.sha256(audio_path(manifest, row).read_bytes()).hexdigest()
    return digests


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    folder = tmp_path_factory.mktemp("data") / "tiny"
    report = build_dataset(folder, TINY, SEED, limit=PIECES)
    return folder, report


@pytest.fixture(scope="module")
def rows(built):
    folder, _ = built
    return {split: read_manifest(folder / f"{split}.jsonl") for split in SPLITS}


def test_the_build_writes_clips_that_match_their_rows(built, rows):
    folder, report = built
    all_rows = [row for split in SPLITS for row in rows[split]]
    assert report.summary["pieces"]["used"] == PIECES
    assert report.summary["clips"] == len(all_rows) >= PIECES
    for row in all_rows:
        info = soundfile.info(str(audio_path(folder / "train.jsonl", row)))
        assert info.samplerate == 32000 and info.channels == 1
        assert info.frames / 32000 == pytest.approx(row.seconds, abs=1e-4)
        assert 4.0 <= row.seconds <= 8.0
        assert row.downbeat is None or 0 <= row.downbeat < row.seconds
        assert all(0 <= n.onset < n.offset <= row.seconds + 1e-6 for n in row.melody)
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["hours"] == pytest.approx(sum(r.seconds for r in all_rows) / 3600, abs=1e-3)
    assert sum(summary["labels"]["family"].values()) == len(all_rows)


def test_captions_match_labels(rows):
    for row in (r for split in SPLITS for r in rows[split]):
        labels = row.labels
        assert str(labels.bpm) in row.caption
        assert labels.key in row.caption and labels.mode in labels.key
        assert labels.meter in row.caption
        assert labels.style.lower() in row.caption.lower()
        assert any(name in row.caption.lower() for name in labels.instruments)
        assert labels.composer in row.caption


def test_no_piece_is_in_two_splits(built, rows):
    splits_of_piece = defaultdict(set)
    for split in SPLITS:
        for row in rows[split]:
            assert row.split == split
            splits_of_piece[row.piece].add(split)
    assert all(len(s) == 1 for s in splits_of_piece.values())
    assert all(split_of(piece, SEED, TINY.splits) in s for piece, s in splits_of_piece.items())
    assert sum(bool(rows[split]) for split in SPLITS) >= 2  # the fixture really spans splits


def test_chroma_of_the_melody_matches_the_rendered_audio(tmp_path):
    # Solo tunes (no accompaniment): the loudest pitch class of the audio is the melody's.
    config = DatasetConfig(clip_seconds=8.0, min_clip_seconds=4.0, max_piece_seconds=16.0,
                           sources=("essenFolksong", "oneills1850"), accompany=0.0)
    build_dataset(tmp_path, config, seed=2, limit=3)
    agreements = []
    for split in SPLITS:
        manifest = tmp_path / f"{split}.jsonl"
        for row in read_manifest(manifest):
            audio = read_audio(audio_path(manifest, row))
            from_audio = audio_to_chroma(audio, 32000, 8.0, window_seconds=0.128)
            from_notes = row.chroma(8.0)
            assert from_notes.shape == from_audio.shape == (12, int(np.ceil(row.seconds * 8)))
            both = from_audio.any(0) & from_notes.any(0)
            agreements.append((from_audio.argmax(0) == from_notes.argmax(0))[both].mean())
    assert len(agreements) >= 3
    assert np.mean(agreements) > 0.7  # chance is 1/12; a shifted or mistimed melody scores ~0.2


def test_the_same_seed_builds_the_same_dataset(built, tmp_path):
    folder, _ = built
    again = tmp_path / "again"
    build_dataset(again, TINY, SEED, limit=PIECES, workers=2)  # parallel, same result
    assert manifests(again) == manifests(folder)
    assert audio_digests(again) == audio_digests(folder)
    other = tmp_path / "other"
    build_dataset(other, TINY, SEED + 1, limit=2)
    assert manifests(other)["train"] != manifests(folder)["train"]


def test_an_interrupted_build_resumes_to_the_same_dataset(built, tmp_path):
    folder, _ = built
    resumed = tmp_path / "resumed"
    build_dataset(resumed, TINY, SEED, limit=3)
    # A crash after rendering a piece but before its record: the record is missing.
    records = sorted((resumed / "pieces").glob("*.json"))
    records[-1].unlink()
    report = build_dataset(resumed, TINY, SEED, limit=PIECES)
    assert report.summary["build"]["pieces_resumed"] == len(records) - 1
    assert manifests(resumed) == manifests(folder)
    assert audio_digests(resumed) == audio_digests(folder)


def test_a_resume_with_other_settings_is_refused(built, tmp_path):
    folder, _ = built
    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)
    with pytest.raises(DatasetError, match="clip_seconds"):
        build_dataset(copy, DatasetConfig(**{**TINY.__dict__, "clip_seconds": 5.0}), SEED,
                      limit=PIECES)
    with pytest.raises(DatasetError, match="seed"):
        build_dataset(copy, TINY, SEED + 1, limit=PIECES)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(DatasetError, match="not empty"):
        build_dataset(tmp_path / "busy", TINY, SEED, limit=1)


def test_hours_stop_at_the_shortest_prefix_that_reaches_them(built, tmp_path):
    folder, report = built
    target = 30 / 3600  # 30 s
    small = build_dataset(tmp_path / "hours", TINY, SEED, hours=target)
    assert small.summary["hours"] >= target
    assert small.summary["pieces"]["used"] < PIECES
    train = manifests(tmp_path / "hours")["train"]
    assert manifests(folder)["train"].startswith(train)  # a prefix of the bigger build
