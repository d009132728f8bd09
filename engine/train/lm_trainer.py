"""LM training on the token cache: random crops, pattern interleave, condition dropout.

One run lives in one folder: `config.yaml`, `checkpoint.pt` (weights, optimiser, step and every
RNG state: `resume=True` continues bit for bit), `log.jsonl` (averaged train terms every
`log_every` steps; validation cross-entropy per codebook every `valid_every` steps).
Checkpoints are written every `checkpoint_minutes` and at the end, atomically.

The learning rate warms up linearly for `warmup_steps`, then follows a cosine down to
`min_lr_ratio` of its peak at `steps`; it is a function of the step, so resuming needs no
scheduler state.

Under `torchrun --nproc-per-node N` (engine/train/distributed.py) each worker takes
`batch_size / N` rows of every global batch, after the condition dropout drawn for the whole
batch, so N workers take the same steps as one process.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch

from engine.atomic import atomic_path
from engine.conditioning import Conditions
from engine.config import from_dict, to_dict
from engine.data.tokens import TokenSplit, read_info
from engine.lm import LanguageModel, LMConfig, drop_conditions, lm_loss
from engine.patterns import get_pattern
from engine.train.distributed import World, join_world
from engine.train.lm_batches import Batch, CropSampler, TextTable
from engine.train.loop import open_run, run_loop
from engine.weights import read_checkpoint

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LMDataConfig:
    """Where the tokens come from and how they are cut."""

    tokens: str = "data/tokens-10h"  # a folder made by `indie dataset tokenize`
    crop_frames: int = 500  # 10 s at 50 frames/s
    batch_size: int = 16  # the global batch: split over the workers under torchrun


@dataclass(frozen=True)
class LMOptimConfig:
    learning_rate: float = 5e-4
    betas: tuple[float, float] = (0.9, 0.95)
    weight_decay: float = 0.1
    warmup_steps: int = 200
    min_lr_ratio: float = 0.1
    grad_clip: float = 1.0


@dataclass(frozen=True)
class LMTrainConfig:
    """Everything an LM run depends on; saved beside its checkpoints."""

    lm: LMConfig = field(default_factory=LMConfig)
    data: LMDataConfig = field(default_factory=LMDataConfig)
    optim: LMOptimConfig = field(default_factory=LMOptimConfig)
    steps: int = 20000
    seed: int = 0
    threads: int = 0  # torch threads (0: leave torch's default)
    device: str = "cpu"  # "cuda" on a lent GPU (resume is bit-exact on the CPU)
    # bf16: matmuls autocast to bfloat16 (weights, optimiser and loss stay fp32); about 3x
    # faster than fp32 on a CPU with AMX (this machine's Xeon), slower on one without.
    precision: Literal["fp32", "bf16"] = "fp32"
    checkpoint_minutes: float = 3.0
    log_every: int = 50
    valid_every: int = 500
    valid_batches: int = 4


@dataclass
class LMTrainState:
    """The mutable parts of a run, all saved in a checkpoint."""

    model: LanguageModel
    optimizer: torch.optim.Optimizer
    data_generator: torch.Generator  # crops
    dropout_generator: torch.Generator  # condition dropout coins
    step: int = 0
    train_seconds: float = 0.0
    # What the forward passes go through: the model, or its DDP wrapper under torchrun (set by
    # train_lm; never saved).
    forward: torch.nn.Module | None = None


def learning_rate(step: int, optim: LMOptimConfig, steps: int) -> float:
    """Linear warm-up, then cosine to min_lr_ratio · peak at `steps`."""
    peak = optim.learning_rate
    if step < optim.warmup_steps:
        return peak * (step + 1) / optim.warmup_steps
    progress = min(1.0, (step - optim.warmup_steps) / max(1, steps - optim.warmup_steps))
    floor = optim.min_lr_ratio
    return peak * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))


def build_state(config: LMTrainConfig) -> LMTrainState:
    """A fresh run: seeded model, optimiser (no decay on norms, biases, embeddings)."""
    torch.manual_seed(config.seed)
    model = LanguageModel(config.lm).to(config.device)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and "embed" not in n]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2 or "embed" in n]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": config.optim.weight_decay},
         {"params": no_decay, "weight_decay": 0.0}],
        lr=config.optim.learning_rate, betas=config.optim.betas)
    return LMTrainState(model, optimizer, torch.Generator().manual_seed(config.seed + 1),
                        torch.Generator().manual_seed(config.seed + 2))


def save_checkpoint(path: Path, config: LMTrainConfig, state: LMTrainState) -> None:
    """`{config, state_dict, step, provenance}` plus what resuming exactly needs, atomically."""
    checkpoint = {
        "config": to_dict(config),
        "state_dict": state.model.state_dict(),
        "step": state.step,
        "provenance": {"tokens": config.data.tokens, "steps": state.step,
                       "train_minutes": round(state.train_seconds / 60, 1)},
        "train_seconds": state.train_seconds,
        "optimizer": state.optimizer.state_dict(),
        "rng": {"torch": torch.get_rng_state(), "data": state.data_generator.get_state(),
                "dropout": state.dropout_generator.get_state()},
    }
    with atomic_path(path) as tmp:
        torch.save(checkpoint, tmp)


def load_checkpoint(path: Path, config: LMTrainConfig) -> LMTrainState:
    """Rebuild the run from its checkpoint; only `steps` may differ from the saved config."""
    checkpoint = read_checkpoint(path)
    saved = to_dict(from_dict(LMTrainConfig, checkpoint["config"], source=str(path)))
    wanted = to_dict(config)
    changed = sorted(k for k in wanted if k != "steps" and wanted[k] != saved.get(k))
    if changed:
        raise ValueError(f"{path} was trained with another config ({', '.join(changed)}); "
                         "resume with the same one")
    state = build_state(config)
    state.model.load_state_dict(checkpoint["state_dict"])
    state.optimizer.load_state_dict(checkpoint["optimizer"])
    rng = checkpoint["rng"]
    torch.set_rng_state(rng["torch"])
    state.data_generator.set_state(rng["data"])
    state.dropout_generator.set_state(rng["dropout"])
    state.step = checkpoint["step"]
    state.train_seconds = checkpoint["train_seconds"]
    return state


def autocast(config: LMTrainConfig) -> torch.autocast:
    """The mixed-precision context of `config.precision` (a no-op for fp32)."""
    return torch.autocast(torch.device(config.device).type, dtype=torch.bfloat16,
                          enabled=config.precision == "bf16")


def train_step(config: LMTrainConfig, state: LMTrainState, batch: Batch,
               world: World | None = None) -> dict[str, float]:
    """One optimisation step on the global batch (this worker's rows of it under torchrun);
    returns the terms for logging."""
    model = state.model
    model.train()
    pattern = get_pattern(config.lm.pattern)
    K, T = batch.codes.shape[1:]
    # Dropout coins for the whole global batch: the generator advances the same on every worker.
    conditions = drop_conditions(batch.conditions, config.lm, state.dropout_generator)
    codes = batch.codes
    if world is not None:
        codes, conditions = world.shard(codes), _shard_conditions(conditions, world)
    sequence = pattern.interleave(codes, model.special).to(config.device)  # [B, K, S]
    with autocast(config):
        logits = (state.forward or model)(sequence, conditions.to(config.device))  # [B, K, S, N]
    loss = lm_loss(logits, sequence, pattern.valid_mask(K, T).to(config.device))
    lr = learning_rate(state.step, config.optim, config.steps)
    for group in state.optimizer.param_groups:
        group["lr"] = lr
    state.optimizer.zero_grad(set_to_none=True)
    loss.total.backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), config.optim.grad_clip)
    state.optimizer.step()
    logged = {"loss": float(loss.total.detach()), "grad_norm": float(grad_norm), "lr": lr}
    for k, value in enumerate(loss.per_codebook.tolist()):
        logged[f"ce/k{k}"] = value
    return logged


def _shard_conditions(conditions: Conditions, world: World) -> Conditions:
    """This worker's rows of every condition."""
    return Conditions(**{f.name: world.shard(getattr(conditions, f.name))
                         for f in dataclasses.fields(conditions)})


@torch.no_grad()
def validate(config: LMTrainConfig, model: LanguageModel, batches: list[Batch]
             ) -> dict[str, float]:
    """Cross-entropy (nats) per codebook on fixed validation crops, all conditions on."""
    model.eval()
    pattern = get_pattern(config.lm.pattern)
    totals, count = None, 0
    for batch in batches:
        K, T = batch.codes.shape[1:]
        sequence = pattern.interleave(batch.codes, model.special).to(config.device)
        with autocast(config):
            logits = model(sequence, batch.conditions.to(config.device))
        loss = lm_loss(logits, sequence, pattern.valid_mask(K, T).to(config.device))
        rows = len(batch.codes)
        totals = loss.per_codebook * rows if totals is None else totals + loss.per_codebook * rows
        count += rows
    per_codebook = (totals / count).tolist()
    result = {f"valid/ce/k{k}": value for k, value in enumerate(per_codebook)}
    result["valid/ce"] = sum(per_codebook) / len(per_codebook)
    return result


def load_samplers(config: LMTrainConfig, text_encoder) -> tuple[CropSampler, CropSampler]:
    """Train and valid crop samplers over the token cache (caption embeddings cached there)."""
    folder = Path(config.data.tokens)
    info = read_info(folder)
    lm = config.lm
    if (info["num_codebooks"], info["codebook_size"]) != (lm.num_codebooks, lm.codebook_size):
        raise ValueError(f"{folder} holds {info['num_codebooks']} codebooks of "
                         f"{info['codebook_size']} codes; the LM config wants "
                         f"{lm.num_codebooks} of {lm.codebook_size}")
    if abs(info["frame_rate"] - lm.frame_rate) > 1e-6:
        raise ValueError(f"{folder} is at {info['frame_rate']} frames/s; lm.frame_rate is "
                         f"{lm.frame_rate}")
    train, valid = TokenSplit.load(folder, "train"), TokenSplit.load(folder, "valid")
    captions = sorted({c.caption for c in train.clips + valid.clips})
    text = TextTable.cached(folder, captions, text_encoder)
    return (CropSampler(train, text, config.data.crop_frames),
            CropSampler(valid, text, config.data.crop_frames))


def train_lm(config: LMTrainConfig, run_dir: str | Path, *, resume: bool = False,
             text_encoder=None, on_log: Callable[[dict], None] | None = None) -> LMTrainState:
    """Train (or resume) an LM run in `run_dir` until `config.steps`.

    Args:
        text_encoder: turns captions into token embeddings (default: the frozen MiniLM).

    Under torchrun, every worker calls this with the same arguments (see the module doc).
    """
    with join_world(config.device) as world:
        return _train(config, Path(run_dir), resume, text_encoder, on_log, world)


def _train(config: LMTrainConfig, run: Path, resume: bool, text_encoder,
           on_log: Callable[[dict], None] | None, world: World) -> LMTrainState:
    world.rows(config.data.batch_size)  # refuses a batch that does not split over the workers
    if world.size > 1 and config.lm.dropout > 0:
        # Every worker would draw the same dropout masks from the same global generator.
        raise ValueError("lm.dropout > 0 is not supported with several workers")
    if config.threads:
        torch.set_num_threads(config.threads)
    steps_needed = get_pattern(config.lm.pattern).num_steps(config.lm.num_codebooks,
                                                            config.data.crop_frames)
    if steps_needed > config.lm.max_steps:
        raise ValueError(f"crops of {config.data.crop_frames} frames take {steps_needed} "
                         f"{config.lm.pattern} steps; lm.max_steps is {config.lm.max_steps}")
    if text_encoder is None:
        from engine.conditioning.text import TextEncoder

        text_encoder = TextEncoder()
    train, valid = load_samplers(config, text_encoder)
    valid_batches = valid.fixed_batches(config.valid_batches, config.data.batch_size)
    state = open_run(run, config, resume=resume, build=lambda: build_state(config),
                     load=lambda path: load_checkpoint(path, config), world=world)
    state.forward = world.parallel(state.model)

    def step() -> dict[str, float]:
        # Every worker draws the whole global batch (the same generator, so the same crops).
        batch = train.random_batch(config.data.batch_size, state.data_generator)
        return train_step(config, state, batch, world)

    run_loop(config, state, run, train_step=step,
             validate=lambda: validate(config, state.model, valid_batches),
             save=lambda path: save_checkpoint(path, config, state), on_log=on_log,
             world=world)
    return state
