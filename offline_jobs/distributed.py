"""Data-parallel training under ``torchrun``: who this process is, the process group, and each
rank's share of an epoch (what ``DistributedSampler`` does, over our index permutation)."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

log = logging.getLogger(__name__)

# torchrun sets all of these in every process it starts; a plain `python -m` sets none.
TORCHRUN_ENV = ("WORLD_SIZE", "RANK", "LOCAL_RANK")


@dataclass(frozen=True)
class DistributedWorld:
    """This process's place among the `world_size` training processes of one torchrun job."""

    rank: int
    local_rank: int
    world_size: int
    local_world_size: int
    backend: str

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that logs, evaluates, writes bundles and publishes."""
        return self.rank == 0

    @property
    def device(self) -> torch.device:
        """Where this rank trains: its own GPU under NCCL, else the CPU."""
        if self.backend == "nccl":
            return torch.device("cuda", self.local_rank)
        return torch.device("cpu")


def launched_by_torchrun() -> bool:
    return all(name in os.environ for name in TORCHRUN_ENV)


def start_distributed() -> DistributedWorld | None:
    """Join the process group when launched by torchrun (NCCL where a GPU is present, gloo on
    CPU); None for a plain single-process run, whose path stays untouched."""
    if not launched_by_torchrun():
        return None
    world_size = int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ["LOCAL_RANK"])
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    world = DistributedWorld(
        rank=dist.get_rank(),
        local_rank=local_rank,
        world_size=world_size,
        local_world_size=int(os.environ.get("LOCAL_WORLD_SIZE", world_size)),
        backend=backend,
    )
    if world.is_main:
        log.info("torchrun: %d processes, backend %s", world.world_size, world.backend)
    return world


def stop_distributed() -> None:
    """Wait for every rank, then leave the process group (a no-op when none was joined)."""
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def leave_distributed() -> None:
    """Leave the process group without waiting for the others (after a failure, they may never
    arrive); a no-op when none is joined."""
    if dist.is_initialized():
        dist.destroy_process_group()


def broadcast_from_main(value: object) -> object:
    """Rank 0's `value` on every rank (picklable objects)."""
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def rank_shard(order: np.ndarray, rank: int, world_size: int) -> np.ndarray:
    """This rank's share of one epoch's permutation, as `DistributedSampler` cuts it.

    order [N] (the same on every rank: same seed, same epoch) is padded by repeating its start
    to a multiple of `world_size`; rank r takes every world_size-th sample from r, so each rank
    gets ceil(N / world_size) samples and every sample lands on exactly one rank (up to the
    padding). Batch k of every rank (per-rank batch b) together is order[k*b*W : (k+1)*b*W]:
    the single-process batch of size b*W.
    """
    per_rank = -(-order.size // world_size)
    padding = per_rank * world_size - order.size
    if padding:
        order = np.concatenate([order, np.resize(order, padding)])
    return order[rank::world_size]
