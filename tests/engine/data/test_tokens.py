"""The token cache: codes equal the codec's, index rows carry the conditions, resume skips."""

import dataclasses
import json

import numpy as np
import torch

from engine.audio import read_audio, write_audio
from engine.data.audio_bank import AudioBank
from engine.data.manifest import read_manifest, write_manifest
from engine.data.tokens import TokenSplit, tokenize_dataset
from tests.conftest import write_tone_dataset
from tests.tiny_engine import K, N, tiny_codec


def test_tokenize_matches_the_codec_clip_by_clip_and_resumes(tmp_path):
    dataset = write_tone_dataset(tmp_path / "data", clips_per_split=3, seconds=0.5)
    # One shorter clip, so that a batch mixes lengths (padding must not change the codes).
    rows = read_manifest(dataset / "valid.jsonl")
    audio = read_audio(dataset / rows[1].audio)  # [1, N]
    write_audio(dataset / rows[1].audio, audio[0, :7000].numpy(), 32000)
    rows[1] = dataclasses.replace(rows[1], seconds=7000 / 32000)
    write_manifest(dataset / "valid.jsonl", rows)

    codec = tiny_codec()
    calls = []
    info = tokenize_dataset(dataset, codec, tmp_path / "tokens", codec_name="tiny",
                            batch_size=2, on_clips=lambda *a: calls.append(a))
    assert (info["num_codebooks"], info["codebook_size"]) == (K, N)
    assert info["splits"]["valid"]["frames"] == 11 + 25 + 25  # ceil(7000/640) + 2 · 16000/640
    assert calls[-1] == ("test", 3, 3)

    for split in ("train", "valid", "test"):
        tokens = TokenSplit.load(tmp_path / "tokens", split)
        assert tokens.codes.dtype == np.int16 and tokens.codes.shape[0] == K
        # The audio as the tokenizer reads it (the int16 bank), each clip encoded alone.
        bank = AudioBank.load(dataset / f"{split}.jsonl", codec.sample_rate)
        rows = read_manifest(dataset / f"{split}.jsonl")
        for c, (row, clip) in enumerate(zip(rows, tokens.clips, strict=True)):
            assert clip.id == row.id and clip.caption == row.caption
            assert clip.bpm == row.labels.bpm and clip.meter == row.labels.meter
            samples = bank.samples[bank.starts[c]:bank.starts[c + 1]] / 32768.0
            alone = codec.encode(torch.from_numpy(samples.astype(np.float32))[None, None])
            stored = tokens.codes[:, clip.start:clip.start + clip.frames]
            assert np.array_equal(stored, alone[0].numpy()), (split, row.id)

    calls.clear()
    tokenize_dataset(dataset, codec, tmp_path / "tokens", codec_name="tiny")
    assert calls == [], "a finished cache is not encoded again"
    tokenize_dataset(dataset, codec, tmp_path / "tokens", codec_name="other",
                     on_clips=lambda *a: calls.append(a))
    assert calls, "another codec redoes the cache"
    index = json.loads((tmp_path / "tokens" / "info.json").read_text())
    assert index["codec"] == "other"


def test_tokenize_command_writes_the_cache(tmp_path, tone_dataset):
    from bridge.cli import main
    from engine.weights import export_codec

    weights = export_codec(tiny_codec(), tmp_path / "codec.safetensors", {"note": "tiny"})
    assert main(["dataset", "tokenize", "--dataset", str(tone_dataset), "--codec",
                 str(weights), "--out", str(tmp_path / "tokens")]) == 0
    train = TokenSplit.load(tmp_path / "tokens", "train")
    assert len(train.clips) == 3 and train.codes.shape == (K, 3 * 50)
    assert int(torch.from_numpy(train.codes.astype(np.int64)).max()) < N
    assert main(["dataset", "tokenize", "--dataset", str(tone_dataset), "--codec",
                 str(tmp_path / "missing.pt"), "--out", str(tmp_path / "other")]) == 2
