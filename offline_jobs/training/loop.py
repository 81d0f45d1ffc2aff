"""The training loop: a plain function that minimises the `TrainingObjective` of any
`PrerankModel` with Adam, over in-memory splits or an on-disk sample store."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from offline_jobs.data.dataset import Batch, InteractionData, make_batch
from offline_jobs.data.stream.samples import StoreSamples
from offline_jobs.data.stream.store import SampleStore
from offline_jobs.distributed import DistributedWorld, rank_shard
from offline_jobs.training.config import TrainConfig
from offline_jobs.training.objective import TrainingObjective
from prerank_contract.features import FeatureSchema
from prerank_model.config import ModelConfig
from prerank_model.models import build_model
from prerank_model.models.base import PrerankModel

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainResult:
    """The trained model (eval mode, on the CPU) and what the manifest records of its training."""

    model: PrerankModel
    train_seconds: float
    epochs: int


def batch_tensors(batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(user_features [B, S_u], history [B, L, S_i], item_features [B, S_i]) as torch tensors."""
    return (
        torch.from_numpy(batch.user_features),
        torch.from_numpy(batch.history),
        torch.from_numpy(batch.item_features),
    )


def batch_loss(objective: nn.Module, batch: Batch) -> torch.Tensor:
    """`objective` (a TrainingObjective, or DDP around one) on one batch -> its scalar loss."""
    loss: torch.Tensor = objective(*batch_tensors(batch), torch.from_numpy(batch.labels))
    return loss


def objective_step(objective: nn.Module, optimizer: torch.optim.Optimizer, batch: Batch) -> float:
    """One optimisation step of `objective` on one batch; returns the loss."""
    loss = batch_loss(objective, batch)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.item()


def train_step(
    model: PrerankModel,
    optimizer: torch.optim.Optimizer,
    batch: Batch,
    loss_fn: torch.nn.BCEWithLogitsLoss,
) -> float:
    """One optimisation step on one batch; returns the loss."""
    return objective_step(TrainingObjective(model, loss_fn), optimizer, batch)


def new_model(name: str, schema: FeatureSchema, config: ModelConfig, seed: int) -> PrerankModel:
    """Build a model with its parameters initialised from `seed`."""
    torch.manual_seed(seed)
    return build_model(name, schema, config)


def new_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Adam:
    """Adam over every parameter, fused: one kernel per parameter instead of a dozen small ops,
    which shortens every model's training step."""
    return torch.optim.Adam(
        model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay, fused=True
    )


class SampleSource(Protocol):
    """Where one rank's training batches come from: an in-memory split (`SplitSamples`) or an
    on-disk store (`offline_jobs.data.stream.samples.StoreSamples`). Every rank of a torchrun job
    must get the same `steps_per_epoch` (DDP waits for every rank at every step)."""

    @property
    def steps_per_epoch(self) -> int: ...

    def epoch_batches(self, epoch: int) -> Iterator[Batch]:
        """The batches of epoch `epoch` (asked for in order 0, 1, ...)."""
        ...


class SplitSamples:
    """One split of in-memory data: every epoch, a permutation of the whole split drawn from one
    generator seeded with `seed` (so epochs must be read in order), and under torchrun
    (`world_size` > 1) this rank's `rank_shard` of it; batches of `batch_size` in that order."""

    def __init__(
        self,
        data: InteractionData,
        indices: np.ndarray,
        batch_size: int,
        seed: int,
        *,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.data = data
        self.indices = indices
        self.batch_size = batch_size
        self.rank = rank
        self.world_size = world_size
        self._rng = np.random.default_rng(seed)
        self._next_epoch = 0

    @property
    def steps_per_epoch(self) -> int:
        per_rank = math.ceil(self.indices.size / self.world_size)
        return math.ceil(per_rank / self.batch_size)

    def epoch_batches(self, epoch: int) -> Iterator[Batch]:
        if epoch != self._next_epoch:
            raise ValueError(f"epoch {epoch} asked for, the generator is at {self._next_epoch}")
        self._next_epoch += 1
        order = self._rng.permutation(self.indices)
        if self.world_size > 1:
            order = rank_shard(order, self.rank, self.world_size)
        for start in range(0, order.size, self.batch_size):
            yield make_batch(self.data, order[start : start + self.batch_size])


def distributed_objective(
    model: PrerankModel,
    objective: nn.Module,
    world: DistributedWorld,
    batch_size: int,
    seed: int,
) -> DistributedDataParallel:
    """`objective` (the model's `TrainingObjective`) as this rank's DDP replica, the model moved
    to `world.device`; `batch_size` is per rank."""
    model.to(world.device)
    # DDP broadcasts rank 0's parameters here (all ranks built them from the same seed anyway)
    replica = DistributedDataParallel(
        objective, device_ids=[world.local_rank] if world.device.type == "cuda" else None
    )
    if world.is_main:
        log.info(
            "DDP %s: %d ranks x batch %d (global %d), seed %d",
            model.name,
            world.world_size,
            batch_size,
            batch_size * world.world_size,
            seed,
        )
    return replica


def training_source(
    data: InteractionData | SampleStore,
    batch_size: int,
    seed: int,
    world: DistributedWorld | None,
    model_name: str,
) -> SampleSource:
    """This rank's training batches: `data.splits['train']` in memory, or every row of a
    `SampleStore` read one chunk at a time."""
    rank, world_size = (0, 1) if world is None else (world.rank, world.world_size)
    if not isinstance(data, SampleStore):
        return SplitSamples(
            data, data.splits["train"], batch_size, seed, rank=rank, world_size=world_size
        )
    if world is None or world.is_main:
        log.info(
            "training %s from the sample store %s: %d rows in chunks of %d",
            model_name,
            data.path,
            data.rows,
            data.chunk_rows,
        )
    return StoreSamples(data, batch_size, seed, rank=rank, world_size=world_size)


def train_model(
    model: PrerankModel,
    data: InteractionData | SampleStore,
    config: TrainConfig,
    *,
    progress: bool = True,
    world: DistributedWorld | None = None,
) -> TrainResult:
    """Train for `config.epochs` epochs with Adam on `data.splits['train']` (in memory) or on
    every row of a `SampleStore` (read one chunk at a time); return the model.

    With `world` (a torchrun job), each rank trains a DDP replica on its share of every epoch
    with batch `config.batch_size / world_size`, so one step sees the single-process run's
    global batch and gradients are averaged over it; the same epochs, the same seeds. The model
    comes back on the CPU, identical on every rank.
    """
    objective: nn.Module = TrainingObjective(model, torch.nn.BCEWithLogitsLoss())
    batch_size = config.batch_size
    if world is not None:
        batch_size = math.ceil(config.batch_size / world.world_size)
        objective = distributed_objective(model, objective, world, batch_size, config.seed)
    source = training_source(data, batch_size, config.seed, world, model.name)
    total_steps = source.steps_per_epoch * config.epochs
    optimizer = new_optimizer(model, config)
    model.train()
    started = time.perf_counter()
    step, loss_value = 0, float("nan")
    bar = tqdm(total=total_steps, desc=f"train {model.name}", disable=not progress, unit="step")
    for epoch in range(config.epochs):
        for batch in source.epoch_batches(epoch):
            model.on_training_progress(step / total_steps)
            loss_value = objective_step(objective, optimizer, batch)
            step += 1
            bar.update()
            bar.set_postfix(epoch=epoch + 1, loss=f"{loss_value:.4f}")
        if step != source.steps_per_epoch * (epoch + 1):  # a rank out of step would hang DDP
            raise RuntimeError(
                f"epoch {epoch}: {step} steps so far, the source promised "
                f"{source.steps_per_epoch} per epoch"
            )
    bar.close()
    model.on_training_progress(1.0)
    model.eval()
    if world is not None:
        model.cpu()  # evaluation, export and precompute run on the CPU
    seconds = time.perf_counter() - started
    log.info(
        "trained %s: %d steps in %.1f s, last loss %.4f", model.name, step, seconds, loss_value
    )
    return TrainResult(model, seconds, config.epochs)
