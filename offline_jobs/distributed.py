"""Data-parallel jobs under ``torchrun``: who this process is, the process group, each rank's
share of an epoch (what ``DistributedSampler`` does, over our index permutation), and steps whose
outcome every rank learns, failures included."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar, cast

import numpy as np
import torch
import torch.distributed as dist

log = logging.getLogger(__name__)

T = TypeVar("T")

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
        """Rank 0: the one that logs, evaluates, writes bundles (the other ranks precompute
        slices of their item tables) and publishes."""
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


def leave_distributed() -> None:
    """Leave the process group: with every rank at once (a barrier first) unless an exchange
    already failed, in which case every rank raised at that exchange and leaves at once too. A
    no-op when none is joined.

    The barrier matters: a gloo process that destroys its group while a peer still holds the
    connections can be aborted by the C++ runtime (SIGABRT, "terminate called without an active
    exception"), and rank 0 holds them until it has written its bundles. A rank that fails on
    its own, outside an exchange, still meets the others here; if they wait in another
    collective instead, the process group's timeout (or torchrun stopping them) ends the wait."""
    if not dist.is_initialized():
        return
    if not _exchange_failed:
        dist.barrier()
    dist.destroy_process_group()


def broadcast_from_main(value: object) -> object:
    """Rank 0's `value` on every rank (picklable objects)."""
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


# Set once an exchange reported a failure (on every rank at the same exchange).
_exchange_failed = False


class RankFailedError(RuntimeError):
    """Another rank failed a step this rank took part in; the message names it and its error."""


@dataclass(frozen=True)
class RankFailure:
    """What a rank tells the others when its part of a step raised (picklable, unlike some
    exceptions)."""

    rank: int
    error: str


def gather_outcomes(step: Callable[[], T], what: str) -> list[T]:
    """Run `step` on this rank, then exchange outcomes: every rank's result, indexed by rank.

    If `step` raises on any rank, every rank raises once the exchange is done (the failing rank
    its own error, the others RankFailedError naming it and its message), so no rank goes on to
    wait in a later collective for a rank that has given up. A rank that dies outright never
    reaches the exchange: torchrun then stops the others, and the process group's timeout bounds
    the wait under any other launcher.
    """
    rank = dist.get_rank()
    failure: BaseException | None = None
    outcome: T | RankFailure
    try:
        outcome = step()
    except Exception as exc:
        failure = exc
        outcome = RankFailure(rank, f"{exc.__class__.__name__}: {exc}")
    outcomes: list[T | RankFailure | None] = [None] * dist.get_world_size()
    dist.all_gather_object(outcomes, outcome)
    failed = [o for o in outcomes if isinstance(o, RankFailure)]
    if failed:
        global _exchange_failed
        _exchange_failed = True  # every rank saw it: none waits for another when leaving
    if failure is not None:
        raise failure
    if failed:
        raise RankFailedError(f"{what}: " + "; ".join(f"rank {f.rank}: {f.error}" for f in failed))
    return cast(list[T], outcomes)


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
