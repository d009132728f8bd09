"""Codec training on a tiny model and a synthetic dataset: it learns, checkpoints, resumes."""

import dataclasses
import json

import pytest
import torch

from engine.codec import CodecConfig
from engine.independence import IndependenceConfig
from engine.quantizer import QuantizerConfig
from engine.train.codec_trainer import CodecDataConfig, CodecTrainConfig, train_codec
from engine.weights import export_codec, load_codec, load_codec_checkpoint


def tiny(dataset, steps=6, weight=5.0):
    return CodecTrainConfig(
        codec=CodecConfig(base_channels=4, latent_dim=8,
                          quantizer=QuantizerConfig(codebook_size=16, dim=8,
                                                    dead_code_threshold=0.1)),
        independence=IndependenceConfig(weight=weight, rows=128),
        data=CodecDataConfig(dataset=str(dataset), batch_size=4, segment_seconds=0.16),
        steps=steps, log_every=2, valid_every=3, valid_batches=1, checkpoint_minutes=60,
    )


def test_training_lowers_the_loss_and_logs(tone_dataset, tmp_path):
    config = tiny(tone_dataset, steps=40, weight=0.0)
    config = CodecTrainConfig(**{**config.__dict__, "log_every": 10, "valid_every": 40})
    state = train_codec(config, tmp_path / "run")
    records = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().split(
        "\n") if line]
    losses = [r["loss"] for r in records if "loss" in r]
    assert state.step == 40 and len(losses) == 4
    assert losses[-1] < losses[0]
    assert "valid/recon/mel" in records[-1] and "valid/indep/mmd" in records[-1]
    assert (tmp_path / "run" / "config.yaml").is_file()


def test_the_mmd_term_is_logged_with_its_weight(tone_dataset, tmp_path):
    train_codec(tiny(tone_dataset, steps=2), tmp_path / "run")
    record = json.loads((tmp_path / "run" / "log.jsonl").read_text().splitlines()[0])
    assert record["indep/weight"] == 5.0 and record["indep/mmd"] >= 0


def test_a_resumed_run_equals_an_uninterrupted_one(tone_dataset, tmp_path):
    straight = train_codec(tiny(tone_dataset, steps=6), tmp_path / "straight")
    train_codec(tiny(tone_dataset, steps=3), tmp_path / "resumed")
    with pytest.raises(FileExistsError):
        train_codec(tiny(tone_dataset, steps=6), tmp_path / "resumed")
    resumed = train_codec(tiny(tone_dataset, steps=6), tmp_path / "resumed", resume=True)
    assert resumed.step == 6
    for (name, a), b in zip(straight.codec.state_dict().items(),
                            resumed.codec.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    with pytest.raises(ValueError, match="independence"):
        train_codec(tiny(tone_dataset, steps=8, weight=1.0), tmp_path / "resumed", resume=True)


def test_a_fork_before_the_mmd_start_shares_the_steps_then_diverges(tone_dataset, tmp_path):
    def config(weight, steps):
        base = tiny(tone_dataset, steps=steps, weight=weight)
        return dataclasses.replace(base, independence=dataclasses.replace(
            base.independence, start_step=3, warmup_steps=0))

    baseline = train_codec(config(0.0, 3), tmp_path / "baseline")
    forked = train_codec(config(5.0, 6), tmp_path / "mmd", fork=tmp_path / "baseline")
    continued = train_codec(config(0.0, 6), tmp_path / "baseline", resume=True)
    assert baseline.step == 3 and forked.step == continued.step == 6
    log = [json.loads(line) for line in (tmp_path / "mmd" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if "loss" in r] == [2, 4, 6]  # the trunk's log carried over
    assert log[-1]["indep/weight"] == 5.0
    differs = [not torch.equal(a, b) for a, b in zip(forked.codec.state_dict().values(),
                                                     continued.codec.state_dict().values(),
                                                     strict=True)]
    assert any(differs)
    with pytest.raises(FileExistsError):
        train_codec(config(5.0, 6), tmp_path / "mmd", fork=tmp_path / "baseline")
    late = dataclasses.replace(config(5.0, 8), independence=IndependenceConfig(
        weight=5.0, rows=128, start_step=2))  # the trunk is already past this start
    with pytest.raises(ValueError, match="independence"):
        train_codec(late, tmp_path / "too-late", fork=tmp_path / "baseline")


def test_exported_weights_rebuild_the_same_codec(tone_dataset, tmp_path):
    train_codec(tiny(tone_dataset, steps=2), tmp_path / "run")
    codec = load_codec_checkpoint(tmp_path / "run" / "checkpoint.pt")
    path = export_codec(codec, tmp_path / "codec.safetensors", {"steps": 2})
    loaded = load_codec(path)
    assert json.loads((tmp_path / "codec.json").read_text())["steps"] == 2
    audio = torch.randn(1, 1, 3200) * 0.1
    assert torch.equal(codec.encode(audio), loaded.encode(audio))
    assert torch.allclose(codec.decode(codec.encode(audio)), loaded.decode(loaded.encode(audio)))
