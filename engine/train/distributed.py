"""Data parallelism for the trainers: `indie train codec|lm` under `torchrun --nproc-per-node N`.

torchrun starts N copies of the command and gives each its RANK, LOCAL_RANK and WORLD_SIZE, and
the address of rank 0 (MASTER_ADDR, MASTER_PORT). Every worker builds the same model from the
same seed and draws the same global batch (`data.batch_size` rows) from the same data generator,
then keeps its own `batch_size / N` rows; DistributedDataParallel averages the gradients, so one
step on N workers is one step on the global batch. Only rank 0 validates, logs and writes
checkpoints; every worker resumes from that checkpoint (the random generators are the same on
all workers), so resuming stays exact.

Batch and learning rate per world size: `data.batch_size` is the global batch, and the learning
rate belongs to it, so one config trains the same model on any N that divides the batch (each
worker does 1/N of the work per step). Nothing is rescaled automatically: to keep each worker's
share when adding workers, multiply `batch_size` by N yourself and retune the learning rate
(for Adam, start near sqrt(N) times it, with a warm-up).

Without torchrun (no WORLD_SIZE, or 1) the world is this one process and every method here
returns its input untouched: single-process runs and their checkpoints stay bit for bit the same.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel


@dataclass(frozen=True)
class World:
    """This worker's place among the data-parallel workers.

    Attributes:
        rank: 0 .. size - 1; rank 0 validates, logs and checkpoints.
        size: the number of workers (1: a plain single-process run).
        device: where collective tensors live (a CUDA device with nccl, else the CPU).
    """

    rank: int = 0
    size: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def main(self) -> bool:
        """True on the worker that writes the run folder."""
        return self.rank == 0

    def rows(self, batch: int) -> slice:
        """This worker's rows of a global batch of `batch` rows."""
        if batch % self.size:
            raise ValueError(f"data.batch_size {batch} does not split over {self.size} workers: "
                             "use a multiple of the worker count")
        share = batch // self.size
        return slice(self.rank * share, (self.rank + 1) * share)

    def shard(self, rows: Tensor) -> Tensor:
        """This worker's rows of a global batch `[B, ...]` (all of it on one worker)."""
        return rows if self.size == 1 else rows[self.rows(len(rows))]

    def parallel(self, module: nn.Module) -> nn.Module:
        """The module to run forward passes through: DDP over the workers, or the module.

        Buffers are not broadcast before each forward: the LM's are constants, and the codec's
        codebooks are copied from rank 0 after each step (`sync_buffers`).
        """
        if self.size == 1:
            return module
        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(module, device_ids=ids, forward_sync_buffers=False)

    def average(self, numbers: dict[str, float]) -> dict[str, float]:
        """The mean of each number over the workers (logged terms of the global batch)."""
        if self.size == 1:
            return numbers
        values = torch.tensor(list(numbers.values()), dtype=torch.float64, device=self.device)
        dist.all_reduce(values)
        return dict(zip(numbers, (values / self.size).tolist(), strict=True))

    def sync_buffers(self, module: nn.Module) -> None:
        """Copy rank 0's buffers (the codec's EMA codebooks) to every worker."""
        if self.size == 1:
            return
        for buffer in module.buffers():
            dist.broadcast(buffer, src=0)

    def barrier(self) -> None:
        if self.size > 1:
            dist.barrier()


@contextmanager
def join_world(device: str = "cpu") -> Iterator[World]:
    """The world torchrun describes in the environment; one process without it.

    Joins the process group (nccl for a CUDA `device`, gloo on the CPU) unless the caller has
    already joined one, and leaves it on exit if it joined it here.

    Args:
        device: the trainer's device; under nccl each worker takes the GPU `LOCAL_RANK`.
    """
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size == 1 and not dist.is_initialized():
        yield World()
        return
    cuda = torch.device(device).type == "cuda"
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if cuda:
        torch.cuda.set_device(local)  # "cuda" now means this worker's GPU
    joined = not dist.is_initialized()
    if joined:
        dist.init_process_group("nccl" if cuda else "gloo")
    try:
        yield World(dist.get_rank(), dist.get_world_size(),
                    torch.device("cuda", local) if cuda else torch.device("cpu"))
    finally:
        if joined:
            dist.destroy_process_group()
