"""Data-parallel training: two gloo workers on this machine against one process.

Each trainer runs a few steps on 2 workers (spawned processes, torchrun's environment variables
set by hand); both workers must end with identical weights, a resumed 2-worker run must equal an
uninterrupted one, and the logged losses must match a single process on the same global batch.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from engine.codec import CodecConfig
from engine.config import load_config, replace_config, save_config
from engine.data.tokens import tokenize_dataset
from engine.discriminator import DiscriminatorConfig
from engine.independence import IndependenceConfig
from engine.quantizer import QuantizerConfig
from engine.train.codec_trainer import CodecDataConfig, CodecTrainConfig, train_codec
from engine.train.distributed import World
from engine.train.lm_trainer import LMTrainConfig, train_lm
from engine.weights import read_checkpoint
from tests.tiny_engine import FixedTextEncoder, tiny_codec

ROOT = Path(__file__).resolve().parents[3]
TINY_LM = ROOT / "configs" / "lm" / "tiny.yaml"
STEPS = 4


def codec_config(dataset: Path, steps: int = STEPS) -> CodecTrainConfig:
    # The codebooks are rank 0's (k-means, EMA and dead-code re-seeds on rank 0's rows only),
    # which one process on the whole batch cannot reproduce: no k-means, no re-seeding, and
    # an EMA slow enough that the codebooks barely move, so that the rest is compared exactly.
    quantizer = QuantizerConfig(codebook_size=16, dim=8, kmeans_init=False, ema_decay=0.9999999,
                                dead_code_threshold=0.0)
    return CodecTrainConfig(
        codec=CodecConfig(base_channels=4, latent_dim=8, quantizer=quantizer),
        discriminator=DiscriminatorConfig(enabled=True, channels=4, windows=(256, 128)),
        independence=IndependenceConfig(weight=5.0, rows=128),
        data=CodecDataConfig(dataset=str(dataset), batch_size=4, segment_seconds=0.16),
        loss_weights={"recon/mel": 2.0, "recon/l1": 0.1, "vq/commit": 1.0, "adv/gen": 0.1,
                      "adv/feat": 1.0},
        steps=steps, threads=1, log_every=1, valid_every=STEPS, valid_batches=1,
        checkpoint_minutes=60)


def lm_config(tokens: Path, steps: int = STEPS) -> LMTrainConfig:
    return replace_config(load_config(LMTrainConfig, TINY_LM),
                          {"data.tokens": str(tokens), "steps": steps, "log_every": 1,
                           "valid_every": STEPS})


def codec_runs(folder: Path, dataset: Path) -> dict[str, dict[str, torch.Tensor]]:
    """Straight to STEPS, and interrupted at STEPS/2 then resumed: final weights and buffers."""
    straight = train_codec(codec_config(dataset), folder / "straight")
    train_codec(codec_config(dataset, STEPS // 2), folder / "parts")
    resumed = train_codec(codec_config(dataset), folder / "parts", resume=True)
    return {"straight": straight.codec.state_dict(), "resumed": resumed.codec.state_dict(),
            "disc": straight.discriminator.state_dict()}


def lm_runs(folder: Path, tokens: Path) -> dict[str, dict[str, torch.Tensor]]:
    encoder = FixedTextEncoder()
    straight = train_lm(lm_config(tokens), folder / "straight", text_encoder=encoder)
    train_lm(lm_config(tokens, STEPS // 2), folder / "parts", text_encoder=encoder)
    resumed = train_lm(lm_config(tokens), folder / "parts", resume=True, text_encoder=encoder)
    return {"straight": straight.model.state_dict(), "resumed": resumed.model.state_dict()}


RUNS = {"codec": codec_runs, "lm": lm_runs}


def worker(rank: int, size: int, port: int, runs: str, folder: Path, data: Path) -> None:
    """One torchrun-like worker: the environment torchrun would set, then the trainer runs.

    The process group is joined once for the three runs (the trainers use a group they find):
    leaving and joining again on one port can meet rank 0's previous store.
    """
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      LOCAL_RANK=str(rank), WORLD_SIZE=str(size))
    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    try:
        states = RUNS[runs](folder, data)
    finally:
        dist.destroy_process_group()
    torch.save(states, folder / f"rank{rank}.pt")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def two_workers(runs: str, folder: Path, data: Path) -> list[dict]:
    mp.spawn(worker, args=(2, free_port(), runs, folder, data), nprocs=2, join=True)
    return [torch.load(folder / f"rank{r}.pt", weights_only=True) for r in range(2)]


def losses(run: Path) -> list[dict[str, float]]:
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    return [r for r in records if "loss" in r]


def assert_equal_states(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


@pytest.fixture(scope="module")
def tokens(tone_dataset, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tokens")
    tokenize_dataset(tone_dataset, tiny_codec(), out, codec_name="tiny")
    return out


def test_two_codec_workers_match_one_process(tone_dataset, tmp_path):
    ranks = two_workers("codec", tmp_path / "two", tone_dataset)
    assert_equal_states(ranks[0]["straight"], ranks[1]["straight"])  # codebooks included
    assert_equal_states(ranks[0]["disc"], ranks[1]["disc"])
    assert_equal_states(ranks[0]["straight"], ranks[0]["resumed"])
    assert_equal_states(ranks[1]["straight"], ranks[1]["resumed"])

    single = codec_runs(tmp_path / "one", tone_dataset)["straight"]
    two, one = losses(tmp_path / "two" / "straight"), losses(tmp_path / "one" / "straight")
    assert [r["step"] for r in two] == [r["step"] for r in one] == list(range(1, STEPS + 1))
    for a, b in zip(two, one, strict=True):
        # The MMD is computed on the gathered rows of both workers: the single process's rows.
        for name in ("loss", "recon/mel", "vq/commit", "indep/mmd", "adv/disc", "grad_norm"):
            assert a[name] == pytest.approx(b[name], rel=1e-4), (a["step"], name)
        # Feature matching divides by the mean real feature of each worker's rows, not all.
        assert a["adv/feat"] == pytest.approx(b["adv/feat"], rel=1e-2), a["step"]
    for name, tensor in single.items():
        assert torch.allclose(ranks[0]["straight"][name], tensor, rtol=0, atol=1e-4), name


def test_two_lm_workers_match_one_process(tokens, tmp_path):
    ranks = two_workers("lm", tmp_path / "two", tokens)
    assert_equal_states(ranks[0]["straight"], ranks[1]["straight"])
    assert_equal_states(ranks[0]["straight"], ranks[0]["resumed"])

    single = lm_runs(tmp_path / "one", tokens)["straight"]
    two, one = losses(tmp_path / "two" / "straight"), losses(tmp_path / "one" / "straight")
    assert len(two) == len(one) == STEPS
    for a, b in zip(two, one, strict=True):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5), a["step"]
    for name, tensor in single.items():
        assert torch.allclose(ranks[0]["straight"][name], tensor, rtol=1e-4, atol=1e-5), name


def test_the_global_batch_splits_evenly_over_the_workers():
    world = World(rank=1, size=2)
    rows = torch.arange(8)
    assert world.shard(rows).tolist() == [4, 5, 6, 7]
    assert World().shard(rows) is rows  # one process: the batch untouched
    with pytest.raises(ValueError, match="multiple of the worker count"):
        World(rank=0, size=3).rows(8)



def test_indie_train_runs_unchanged_under_torchrun(tone_dataset, tmp_path):
    config = tmp_path / "codec.yaml"
    save_config(codec_config(tone_dataset, steps=2), config)
    # `--` ends torchrun's options: it would read `--run` as an abbreviation of its `--run-path`.
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
               "2", "-m", "bridge.cli", "--", "train", "codec", "--config", str(config),
               "--run", str(tmp_path / "run")]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert read_checkpoint(tmp_path / "run" / "checkpoint.pt")["step"] == 2
    assert [r["step"] for r in losses(tmp_path / "run")] == [1, 2]  # rank 0 alone writes
    assert result.stdout.count("trained") == 1
