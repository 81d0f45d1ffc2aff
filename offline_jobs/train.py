"""The training loop: a plain function over any `PrerankModel`, binary cross-entropy on labels
plus the model's own auxiliary loss (DAT's mimic loss, IntTower's CIR) where it has one."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from offline_jobs.data.dataset import Batch, InteractionData, make_batch
from offline_jobs.distributed import DistributedWorld, rank_shard
from prerank_contract.features import FeatureSchema
from prerank_model.config import ModelConfig
from prerank_model.models import build_model
from prerank_model.models.base import PrerankModel

log = logging.getLogger(__name__)


class TrainConfig(BaseModel):
    """The training budget, identical for every model trained in one run."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    seed: int = 42
    epochs: int = Field(default=3, ge=1)
    batch_size: int = Field(default=1024, ge=1)
    learning_rate: float = Field(default=3e-3, gt=0)
    weight_decay: float = Field(default=0.0, ge=0)
    eval_batch_size: int = Field(default=8192, ge=1)


@dataclass(frozen=True)
class TrainResult:
    model: PrerankModel
    train_seconds: float
    epochs: int
    final_loss: float


def batch_tensors(batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(user_features [B, S_u], history [B, L, S_i], item_features [B, S_i]) as torch tensors."""
    return (
        torch.from_numpy(batch.user_features),
        torch.from_numpy(batch.history),
        torch.from_numpy(batch.item_features),
    )


class TrainingObjective(nn.Module):
    """The training loss of one model as a module: BCE of its training logits plus the model's
    own auxiliary loss, if it has one. Under torchrun, DistributedDataParallel wraps this module,
    not the model: DDP averages gradients only for passes through the forward of the module it
    wraps, and a model's `forward` is its serving path, not `training_forward`."""

    def __init__(self, model: PrerankModel, loss_fn: nn.BCEWithLogitsLoss) -> None:
        super().__init__()
        self.model = model
        self.loss_fn = loss_fn

    def forward(
        self,
        user_features: torch.Tensor,
        history: torch.Tensor,
        item_features: torch.Tensor,
        labels: torch.Tensor,
    ) -> torch.Tensor:
        """user_features [B, S_u], history [B, L, S_i], item_features [B, S_i], labels [B]
        -> the batch's mean loss (a scalar)."""
        output = self.model.training_forward(user_features, history, item_features, labels)
        loss = self.loss_fn(output.logits, labels)
        if output.auxiliary_loss is not None:
            loss = loss + output.auxiliary_loss
        return loss


def batch_loss(objective: nn.Module, batch: Batch) -> torch.Tensor:
    """`objective` (a TrainingObjective, or DDP around one) on one batch -> its scalar loss."""
    loss: torch.Tensor = objective(*batch_tensors(batch), torch.from_numpy(batch.labels))
    return loss


def training_loss(
    model: PrerankModel, batch: Batch, loss_fn: torch.nn.BCEWithLogitsLoss
) -> torch.Tensor:
    """BCE of the model's training logits plus the model's own auxiliary loss, if it has one."""
    return batch_loss(TrainingObjective(model, loss_fn), batch)


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


def train_model(
    model: PrerankModel,
    data: InteractionData,
    config: TrainConfig,
    *,
    progress: bool = True,
    world: DistributedWorld | None = None,
) -> TrainResult:
    """Train on `data.splits['train']` for `config.epochs` epochs with Adam; return the model.

    With `world` (a torchrun job), each rank trains a DDP replica on its shard of every epoch's
    permutation with batch `config.batch_size / world_size`, so one step sees the single-process
    run's global batch and gradients are averaged over it; the same epochs, the same seeds. The
    model comes back on the CPU, identical on every rank.
    """
    rng = np.random.default_rng(config.seed)
    train_indices = data.splits["train"]
    batch_size = config.batch_size
    objective: nn.Module = TrainingObjective(model, torch.nn.BCEWithLogitsLoss())
    if world is not None:
        batch_size = math.ceil(config.batch_size / world.world_size)
        model.to(world.device)
        # DDP broadcasts rank 0's parameters here (all ranks built them from the same seed anyway)
        objective = DistributedDataParallel(
            objective, device_ids=[world.local_rank] if world.device.type == "cuda" else None
        )
        if world.is_main:
            log.info(
                "DDP %s: %d ranks x batch %d (global %d), seed %d",
                model.name,
                world.world_size,
                batch_size,
                batch_size * world.world_size,
                config.seed,
            )
    per_rank_samples = (
        train_indices.size if world is None else math.ceil(train_indices.size / world.world_size)
    )
    steps_per_epoch = math.ceil(per_rank_samples / batch_size)
    total_steps = steps_per_epoch * config.epochs
    optimizer = torch.optim.Adam(
        model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )
    model.train()
    started = time.perf_counter()
    step, loss_value = 0, float("nan")
    bar = tqdm(total=total_steps, desc=f"train {model.name}", disable=not progress, unit="step")
    for epoch in range(config.epochs):
        order = rng.permutation(train_indices)
        if world is not None:
            order = rank_shard(order, world.rank, world.world_size)
        for start in range(0, order.size, batch_size):
            model.on_training_progress(step / total_steps)
            batch = make_batch(data, order[start : start + batch_size])
            loss_value = objective_step(objective, optimizer, batch)
            step += 1
            bar.update()
            bar.set_postfix(epoch=epoch + 1, loss=f"{loss_value:.4f}")
    bar.close()
    model.on_training_progress(1.0)
    model.eval()
    if world is not None:
        model.cpu()  # evaluation, export and precompute run on the CPU
    seconds = time.perf_counter() - started
    log.info(
        "trained %s: %d steps in %.1f s, last loss %.4f", model.name, step, seconds, loss_value
    )
    return TrainResult(model, seconds, config.epochs, loss_value)
