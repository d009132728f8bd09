"""Codec training: reconstruction + commitment (+ adversarial) + the independence loss of [MMD].

One run lives in one folder: `config.yaml` (the full config), `checkpoint.pt` (everything needed
to resume exactly: weights, EMA codebooks, optimisers, step, every RNG state), `log.jsonl` (one
line of averaged terms per `log_every` steps, plus validation lines). Checkpoints are written every
`checkpoint_minutes` and at the end, atomically; `resume=True` continues bit for bit.

Under `torchrun --nproc-per-node N` (engine/train/distributed.py) each worker takes
`batch_size / N` rows of every global batch; the independence loss is computed on the rows of
all workers, gathered (`gather_rows`), and the codebooks (EMA buffers, not parameters) are
rank 0's, copied to every worker after each step.
"""

from __future__ import annotations

import logging
import shutil
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from engine.atomic import atomic_path
from engine.codec import Codec, CodecConfig
from engine.config import from_dict, save_config, to_dict
from engine.data.audio_bank import AudioBank
from engine.discriminator import (
    DiscriminatorConfig,
    MultiScaleSTFTDiscriminator,
    adversarial_terms,
    discriminator_loss,
)
from engine.independence import (
    IndependenceConfig,
    gather_rows,
    independence_loss,
    independence_weight,
)
from engine.losses import MelSpectrograms, ReconstructionConfig, reconstruction_terms, weighted_sum
from engine.train.distributed import World, join_world
from engine.train.loop import open_run, run_loop
from engine.weights import read_checkpoint

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CodecDataConfig:
    """Where the audio comes from and how it is cut into training examples."""

    dataset: str = "data/indie-10h"  # a folder made by `indie dataset build`
    max_hours: float | None = None  # use only the first hours of the train split
    segment_seconds: float = 0.64  # 32 frames at 50 Hz
    batch_size: int = 16  # the global batch: split over the workers under torchrun


@dataclass(frozen=True)
class OptimConfig:
    learning_rate: float = 3e-4
    betas: tuple[float, float] = (0.8, 0.99)
    grad_clip: float = 1.0


def _default_weights() -> dict[str, float]:
    return {"recon/mel": 2.0, "recon/l1": 0.1, "vq/commit": 1.0}


@dataclass(frozen=True)
class CodecTrainConfig:
    """Everything a codec run depends on; saved beside its checkpoints."""

    codec: CodecConfig = field(default_factory=CodecConfig)
    reconstruction: ReconstructionConfig = field(default_factory=ReconstructionConfig)
    discriminator: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)
    independence: IndependenceConfig = field(default_factory=IndependenceConfig)
    data: CodecDataConfig = field(default_factory=CodecDataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    loss_weights: dict[str, float] = field(default_factory=_default_weights)
    steps: int = 2000
    seed: int = 0
    threads: int = 0  # torch threads (0: leave torch's default)
    checkpoint_minutes: float = 3.0
    log_every: int = 50
    valid_every: int = 500
    valid_batches: int = 4


@dataclass
class TrainState:
    """The mutable parts of a run, all saved in a checkpoint."""

    codec: Codec
    optimizer: torch.optim.Optimizer
    discriminator: MultiScaleSTFTDiscriminator | None
    disc_optimizer: torch.optim.Optimizer | None
    data_generator: torch.Generator
    mmd_generator: torch.Generator
    step: int = 0
    train_seconds: float = 0.0
    # What the forward passes go through: the modules themselves, or their DDP wrappers under
    # torchrun (set by train_codec; never saved).
    codec_forward: torch.nn.Module | None = None
    disc_forward: torch.nn.Module | None = None


def build_state(config: CodecTrainConfig) -> TrainState:
    """A fresh run: seeded model, optimisers and generators."""
    torch.manual_seed(config.seed)
    codec = Codec(config.codec)
    optimizer = torch.optim.Adam(codec.parameters(), lr=config.optim.learning_rate,
                                 betas=config.optim.betas)
    discriminator = disc_optimizer = None
    if config.discriminator.enabled:
        discriminator = MultiScaleSTFTDiscriminator(config.discriminator)
        disc_optimizer = torch.optim.Adam(discriminator.parameters(),
                                          lr=config.discriminator.learning_rate,
                                          betas=config.discriminator.betas)
    return TrainState(codec, optimizer, discriminator, disc_optimizer,
                      torch.Generator().manual_seed(config.seed + 1),
                      torch.Generator().manual_seed(config.seed + 2))


def save_checkpoint(path: Path, config: CodecTrainConfig, state: TrainState) -> None:
    """Everything to resume exactly, written atomically (never a half-written checkpoint)."""
    checkpoint = {
        "config": to_dict(config),
        "step": state.step,
        "train_seconds": state.train_seconds,
        "codec": state.codec.state_dict(),
        "optimizer": state.optimizer.state_dict(),
        "discriminator": state.discriminator.state_dict() if state.discriminator else None,
        "disc_optimizer": state.disc_optimizer.state_dict() if state.disc_optimizer else None,
        # The global torch RNG drives k-means and dead-code replacement in the quantizer.
        "rng": {"torch": torch.get_rng_state(), "data": state.data_generator.get_state(),
                "mmd": state.mmd_generator.get_state()},
    }
    with atomic_path(path) as tmp:
        torch.save(checkpoint, tmp)


def load_checkpoint(path: Path, config: CodecTrainConfig) -> TrainState:
    """Rebuild the run from its checkpoint (weights_only: no pickle from the file)."""
    checkpoint = read_checkpoint(path)
    saved = to_dict(from_dict(CodecTrainConfig, checkpoint["config"], source=str(path)))
    wanted = to_dict(config)
    # The length of the run may change on resume (to extend it), and so may the threads. The
    # independence settings may change until the loss starts: the steps so far are the same
    # for any of them (the loss draws no random numbers while it is off).
    free = {"steps", "threads"}
    if checkpoint["step"] <= config.independence.start_step:
        free.add("independence")
    changed = sorted(k for k in wanted if k not in free and wanted[k] != saved.get(k))
    if changed:
        raise ValueError(f"{path} was trained with another config ({', '.join(changed)}); "
                         "resume with the same one")
    state = build_state(config)
    state.codec.load_state_dict(checkpoint["codec"])
    state.optimizer.load_state_dict(checkpoint["optimizer"])
    if state.discriminator is not None:
        state.discriminator.load_state_dict(checkpoint["discriminator"])
        state.disc_optimizer.load_state_dict(checkpoint["disc_optimizer"])
    rng = checkpoint["rng"]
    torch.set_rng_state(rng["torch"])
    state.data_generator.set_state(rng["data"])
    state.mmd_generator.set_state(rng["mmd"])
    state.step = checkpoint["step"]
    state.train_seconds = checkpoint["train_seconds"]
    return state


def train_step(config: CodecTrainConfig, state: TrainState, audio: torch.Tensor,
               mels: MelSpectrograms, world: World | None = None) -> dict[str, float]:
    """One optimisation step on a batch `[B, 1, N]` (this worker's rows of the global batch);
    returns the terms for logging."""
    codec = state.codec
    codec.train()
    out = (state.codec_forward or codec)(audio)
    weights = dict(config.loss_weights)
    terms = reconstruction_terms(out.audio, audio, mels, config.reconstruction, names=weights)
    terms["vq/commit"] = out.commitment
    if state.discriminator is not None:
        terms.update(adversarial_terms(state.discriminator, out.audio, audio))
    total = weighted_sum(terms, weights)
    mmd_weight = independence_weight(state.step, config.independence)
    if mmd_weight > 0:
        # Every worker's rows (in rank order: the global batch); gradients flow back through
        # the gather to each worker's own rows (see gather_rows).
        streams = gather_rows(out.stream(config.independence.stream))  # [B, K, T, D]
        terms["indep/mmd"] = independence_loss(streams, config.independence,
                                               state.mmd_generator)
        total = total + mmd_weight * terms["indep/mmd"]
    state.optimizer.zero_grad(set_to_none=True)
    total.backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(codec.parameters(), config.optim.grad_clip)
    state.optimizer.step()
    if state.discriminator is not None:
        discriminator = state.disc_forward or state.discriminator
        disc = discriminator_loss(discriminator(audio), discriminator(out.audio.detach()))
        state.disc_optimizer.zero_grad(set_to_none=True)
        disc.backward()
        state.disc_optimizer.step()
        terms["adv/disc"] = disc
    if world is not None:
        world.sync_buffers(codec)  # the codebooks: rank 0's EMA and dead-code re-seeds
    logged = {name: float(value.detach()) for name, value in terms.items()}
    logged["loss"] = float(total.detach())
    logged["indep/weight"] = mmd_weight
    logged["grad_norm"] = float(grad_norm)
    logged.update(codec.quantizer.last_stats.as_log())
    return logged


@torch.no_grad()
def validate(config: CodecTrainConfig, codec: Codec, valid: torch.Tensor,
             mels: MelSpectrograms) -> dict[str, float]:
    """Reconstruction terms and held-out MMD on fixed validation crops."""
    from engine.metrics.dependence import heldout_mmd

    codec.eval()
    sums: dict[str, float] = defaultdict(float)
    streams = []
    for batch in valid.split(config.data.batch_size):
        out = codec(batch)
        for name, value in reconstruction_terms(out.audio, batch, mels,
                                                config.reconstruction).items():
            sums[f"valid/{name}"] += float(value) * len(batch)
        streams.append(out.stream(config.independence.stream))
    result = {name: total / len(valid) for name, total in sums.items()}
    result["valid/indep/mmd"] = heldout_mmd(torch.cat(streams), config.independence)
    return result


def train_codec(config: CodecTrainConfig, run_dir: str | Path, *, resume: bool = False,
                fork: str | Path | None = None,
                on_log: Callable[[dict], None] | None = None) -> TrainState:
    """Train (or resume) a codec run in `run_dir` until `config.steps`.

    `fork` starts a new run from another run's checkpoint and log: two runs that differ only
    in the independence loss share their steps before `independence.start_step`.
    Under torchrun, every worker calls this with the same arguments (see the module doc).
    """
    with join_world() as world:
        return _train(config, Path(run_dir), resume, fork, on_log, world)


def _train(config: CodecTrainConfig, run: Path, resume: bool, fork: str | Path | None,
           on_log: Callable[[dict], None] | None, world: World) -> TrainState:
    checkpoint = run / "checkpoint.pt"
    world.rows(config.data.batch_size)  # refuses a batch that does not split over the workers
    if fork is not None:
        if checkpoint.exists():
            raise FileExistsError(f"{run} already holds a run; fork into a new folder")
        load_checkpoint(Path(fork) / "checkpoint.pt", config)  # refuses a changed config
        world.barrier()  # every worker has looked before rank 0 copies
        if world.main:
            run.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(Path(fork) / "log.jsonl", run / "log.jsonl")
            shutil.copyfile(Path(fork) / "checkpoint.pt", checkpoint)
            save_config(config, run / "config.yaml")
        world.barrier()  # the others resume from the copied checkpoint
        resume = True
    if config.threads:
        torch.set_num_threads(config.threads)
    state = open_run(run, config, resume=resume, build=lambda: build_state(config),
                     load=lambda path: load_checkpoint(path, config), world=world)
    state.codec_forward = world.parallel(state.codec)
    if state.discriminator is not None:
        state.disc_forward = world.parallel(state.discriminator)
    dataset = Path(config.data.dataset)
    train = AudioBank.load(dataset / "train.jsonl", config.codec.sample_rate,
                           config.data.max_hours)
    segment = round(config.data.segment_seconds * config.codec.sample_rate)
    valid = AudioBank.load(dataset / "valid.jsonl", config.codec.sample_rate).fixed_crops(
        config.valid_batches * config.data.batch_size, segment)
    mels = MelSpectrograms(config.reconstruction)

    def step() -> dict[str, float]:
        # Every worker draws the whole global batch (the same generator, so the same crops)
        # and keeps its own rows.
        audio = train.random_crops(config.data.batch_size, segment, state.data_generator)
        return train_step(config, state, world.shard(audio), mels, world)

    run_loop(config, state, run, train_step=step,
             validate=lambda: validate(config, state.codec, valid, mels),
             save=lambda path: save_checkpoint(path, config, state), on_log=on_log,
             world=world)
    return state
