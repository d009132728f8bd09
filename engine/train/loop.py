"""The run loop that every trainer shares: open or resume a run folder, then step, log,
validate and checkpoint until the configured number of steps.

A trainer supplies what differs (its state, one optimisation step, validation, checkpoint
I/O); this module owns the bookkeeping, so that logging cadence, training-time accounting and
checkpoint timing are the same for the codec and the LM, and resumes stay bit-exact.
Under torchrun every worker runs the loop; only rank 0 validates, logs and checkpoints
(engine/train/distributed.py).
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, TypeVar

from engine.config import save_config
from engine.train.distributed import World

log = logging.getLogger(__name__)


class RunConfig(Protocol):
    """The fields of a training config that the loop reads."""

    steps: int
    log_every: int
    valid_every: int
    checkpoint_minutes: float


class RunState(Protocol):
    """The fields of a trainer's state that the loop advances."""

    step: int
    train_seconds: float


State = TypeVar("State", bound=RunState)


def open_run(run: Path, config: Any, *, resume: bool, build: Callable[[], State],
             load: Callable[[Path], State], world: World | None = None) -> State:
    """A fresh run in `run` (config saved beside it), or the one there when `resume`.

    Every worker builds or loads the same state; only rank 0 writes the folder.

    Raises:
        FileExistsError: `run` holds a checkpoint and `resume` is false.
    """
    checkpoint = run / "checkpoint.pt"
    if checkpoint.exists():
        if not resume:
            raise FileExistsError(f"{run} already holds a run; pass resume to continue it")
        state = load(checkpoint)
        log.info("resumed %s at step %d", run, state.step)
        return state
    if world is None or world.main:
        run.mkdir(parents=True, exist_ok=True)
        save_config(config, run / "config.yaml")
    return build()


def run_loop(config: RunConfig, state: RunState, run: Path, *,
             train_step: Callable[[], dict[str, float]],
             validate: Callable[[], dict[str, float]],
             save: Callable[[Path], None],
             on_log: Callable[[dict], None] | None = None,
             world: World | None = None) -> None:
    """Step until `config.steps`, appending averaged logs and validations to run/log.jsonl.

    Args:
        train_step: one optimisation step (it draws its own batch); returns named numbers.
        validate: numbers on the held-out batches, logged every `valid_every` steps and last.
        save: writes the checkpoint to the given path; called every `checkpoint_minutes`
            and at the last step. Checkpoint time is not counted as training time.
        world: the data-parallel workers; logged terms are averaged over them, and only
            rank 0 validates, writes the log, calls `on_log` and saves.
    """
    world = world or World()
    checkpoint = run / "checkpoint.pt"
    sums: dict[str, float] = defaultdict(float)
    count, last_save, started = 0, time.monotonic(), time.monotonic()
    log_path = run / "log.jsonl"
    with (open(log_path, "a", encoding="utf-8") if world.main  # noqa: SIM115
          else contextlib.nullcontext()) as log_file:
        while state.step < config.steps:
            for name, value in world.average(train_step()).items():
                sums[name] += value
            count += 1
            state.step += 1
            now = time.monotonic()
            state.train_seconds += now - started
            started = now
            record = None
            if state.step % config.log_every == 0:
                record = {"step": state.step, "seconds": round(state.train_seconds, 1),
                          **{k: round(v / count, 6) for k, v in sums.items()}}
                sums, count = defaultdict(float), 0
            if not world.main:
                continue
            if state.step % config.valid_every == 0 or state.step == config.steps:
                record = {**(record or {"step": state.step}), **validate()}
            if record:
                log_file.write(json.dumps(record) + "\n")
                log_file.flush()
                if on_log:
                    on_log(record)
            if now - last_save > config.checkpoint_minutes * 60 or state.step == config.steps:
                save(checkpoint)
                last_save = now
                started = time.monotonic()
    world.barrier()  # no worker leaves before rank 0 has written the last checkpoint
