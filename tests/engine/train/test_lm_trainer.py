"""LM training: crops and their conditions, learning, bit-exact resume, the CLI."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.conditioning.text import TextEncoder
from engine.config import load_config, replace_config
from engine.data.tokens import ClipTokens, TokenSplit, tokenize_dataset
from engine.melody import Note
from engine.train.lm_batches import CropSampler, TextTable, bar_quarters
from engine.train.lm_trainer import LMTrainConfig, learning_rate, train_lm
from engine.weights import lm_from_checkpoint, read_checkpoint
from tests.tiny_engine import FixedTextEncoder, tiny_codec

TINY = Path(__file__).resolve().parents[3] / "configs" / "lm" / "tiny.yaml"


@pytest.fixture(scope="module")
def tokens(tone_dataset, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tokens")
    tokenize_dataset(tone_dataset, tiny_codec(), out, codec_name="tiny")
    return out


def tiny_config(tokens: Path, **overrides) -> LMTrainConfig:
    return replace_config(load_config(LMTrainConfig, TINY),
                          {"data.tokens": str(tokens), **overrides})


def test_crops_carry_the_melody_tempo_and_caption_of_their_clip():
    rate = 50.0
    clips = [ClipTokens("a", 0, 100, "first caption", 120.0, 0.25, "3/4",
                        (Note(62, 0.0, 0.5), Note(67, 1.0, 2.0))),
             ClipTokens("b", 100, 40, "second", 0.0, None, "4/4", ())]
    codes = np.arange(4 * 140, dtype=np.int16).reshape(4, 140) % 16
    split = TokenSplit(codes, clips, rate)
    text = TextTable.build(["first caption", "second"], FixedTextEncoder())
    sampler = CropSampler(split, text, frames=60)
    assert [c.id for c in sampler.clips] == ["a"]  # "b" is shorter than a crop

    batch = sampler._batch([(0, 40)])  # frames 40..99 of clip a: 0.8 s .. 2.0 s
    assert torch.equal(batch.codes[0], torch.from_numpy(codes[:, 40:100].astype(np.int64)))
    melody = batch.conditions.melody[0]  # [12, 60]
    assert melody[:, :10].sum() == 0  # 0.8-1.0 s: no note
    assert (melody[7, 10:60] == 1).all()  # G from 1.0 s
    # Bars of 3 quarters at 120 BPM = 1.5 s from 0.25 s: next bar line after 0.8 s is 1.75 s.
    assert batch.conditions.beat_offset[0].item() == pytest.approx(0.95)
    assert batch.conditions.bpm[0] == 120.0
    assert batch.conditions.text_mask[0].sum() == 2  # two words in the double
    assert bar_quarters("6/8") == 3.0 and bar_quarters("?") == 4.0

    g = torch.Generator().manual_seed(0)
    offsets = {sampler.random_batch(8, g).codes[0, 0, 0].item() for _ in range(20)}
    assert len(offsets) > 5  # offsets vary


def test_learning_rate_warms_up_then_decays():
    config = LMTrainConfig()
    optim = config.optim
    assert learning_rate(0, optim, 1000) == pytest.approx(optim.learning_rate / 200)
    assert learning_rate(199, optim, 1000) == pytest.approx(optim.learning_rate)
    assert learning_rate(1000, optim, 1000) == pytest.approx(0.1 * optim.learning_rate)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_training_lowers_the_loss(tokens, tmp_path, precision):
    config = tiny_config(tokens, steps=40, log_every=10, valid_every=40, precision=precision)
    train_lm(config, tmp_path / "run", text_encoder=FixedTextEncoder())
    records = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").open()]
    losses = [r["loss"] for r in records if "loss" in r]
    assert losses[-1] < losses[0] - 0.3, losses
    assert {f"valid/ce/k{k}" for k in range(4)} <= set(records[-1])
    model = lm_from_checkpoint(read_checkpoint(tmp_path / "run" / "checkpoint.pt"))
    assert model.config == config.lm


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_resume_after_an_interruption_equals_an_uninterrupted_run(tokens, tmp_path, precision):
    encoder = FixedTextEncoder()
    config = tiny_config(tokens, steps=6, log_every=1, checkpoint_minutes=0.0,
                         precision=precision)
    whole = train_lm(config, tmp_path / "whole", text_encoder=encoder)

    def interrupt(record: dict) -> None:
        if record["step"] == 4:  # Ctrl-C in the middle of step 4's bookkeeping
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_lm(config, tmp_path / "parts", text_encoder=encoder, on_log=interrupt)
    assert read_checkpoint(tmp_path / "parts" / "checkpoint.pt")["step"] == 3
    with pytest.raises(FileExistsError):
        train_lm(config, tmp_path / "parts", text_encoder=encoder)
    resumed = train_lm(config, tmp_path / "parts", resume=True, text_encoder=encoder)
    assert resumed.step == whole.step == 6
    for name, tensor in whole.model.state_dict().items():
        assert torch.equal(tensor, resumed.model.state_dict()[name]), name
    logs = [[json.loads(line) for line in (tmp_path / run / "log.jsonl").open()]
            for run in ("whole", "parts")]
    assert logs[0][-1] == {**logs[1][-1], "seconds": logs[0][-1]["seconds"]}


def test_export_lm_command_ships_the_trained_model(tokens, tmp_path):
    from bridge.cli import main
    from engine.weights import load_lm

    state = train_lm(tiny_config(tokens, steps=3), tmp_path / "run",
                     text_encoder=FixedTextEncoder())
    out = tmp_path / "lm.safetensors"
    assert main(["export", "lm", "--run", str(tmp_path / "run"), "--out", str(out),
                 "--note", "tiny"]) == 0
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["steps"] == 3 and "valid/ce/k0" in meta["validation"]
    shipped = load_lm(out)
    for name, tensor in state.model.state_dict().items():
        assert torch.equal(tensor, shipped.state_dict()[name]), name


def test_resume_refuses_another_config(tokens, tmp_path):
    train_lm(tiny_config(tokens, steps=1), tmp_path / "run", text_encoder=FixedTextEncoder())
    with pytest.raises(ValueError, match="another config"):
        train_lm(tiny_config(tokens, steps=2, **{"optim.learning_rate": 1e-4}),
                 tmp_path / "run", resume=True, text_encoder=FixedTextEncoder())


def test_crops_longer_than_the_model_are_refused(tokens, tmp_path):
    with pytest.raises(ValueError, match="max_steps"):
        train_lm(tiny_config(tokens, **{"data.crop_frames": 62}), tmp_path / "run",
                 text_encoder=FixedTextEncoder())


def test_train_lm_command_with_the_real_text_encoder(tokens, tmp_path):
    """The CLI end to end; this is the test that loads the real MiniLM."""
    from bridge.cli import main

    assert main(["train", "lm", "--config", str(TINY), "--run", str(tmp_path / "run"),
                 "--tokens", str(tokens), "--steps", "2"]) == 0
    assert read_checkpoint(tmp_path / "run" / "checkpoint.pt")["step"] == 2
    table = TextTable.cached(tokens, ["a caption"], TextEncoder())  # read back, not rebuilt
    assert (tokens / "text-all-MiniLM-L6-v2.safetensors").is_file()
    assert table.embeddings.shape[1] == 384
    # Real sentence embeddings: the same caption twice is identical, another one is not.
    first, _ = TextEncoder().encode(["a caption", "a caption", "a loud brass band"])
    assert torch.equal(first[0], first[1]) and not torch.allclose(first[0, :3], first[2, :3])
