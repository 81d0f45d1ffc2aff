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
from tqdm import tqdm

from offline_jobs.data.dataset import Batch, InteractionData, make_batch
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


def training_loss(
    model: PrerankModel, batch: Batch, loss_fn: torch.nn.BCEWithLogitsLoss
) -> torch.Tensor:
    """BCE of the model's training logits plus the model's own auxiliary loss, if it has one."""
    labels = torch.from_numpy(batch.labels)
    output = model.training_forward(*batch_tensors(batch), labels)
    loss = loss_fn(output.logits, labels)
    if output.auxiliary_loss is not None:
        loss = loss + output.auxiliary_loss
    return loss


def train_step(
    model: PrerankModel,
    optimizer: torch.optim.Optimizer,
    batch: Batch,
    loss_fn: torch.nn.BCEWithLogitsLoss,
) -> float:
    """One optimisation step on one batch; returns the loss."""
    loss = training_loss(model, batch, loss_fn)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.item()


def new_model(name: str, schema: FeatureSchema, config: ModelConfig, seed: int) -> PrerankModel:
    """Build a model with its parameters initialised from `seed`."""
    torch.manual_seed(seed)
    return build_model(name, schema, config)


def train_model(
    model: PrerankModel, data: InteractionData, config: TrainConfig, *, progress: bool = True
) -> TrainResult:
    """Train on `data.splits['train']` for `config.epochs` epochs with Adam; return the model."""
    rng = np.random.default_rng(config.seed)
    train_indices = data.splits["train"]
    steps_per_epoch = math.ceil(train_indices.size / config.batch_size)
    total_steps = steps_per_epoch * config.epochs
    optimizer = torch.optim.Adam(
        model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )
    loss_fn = torch.nn.BCEWithLogitsLoss()
    model.train()
    started = time.perf_counter()
    step, loss_value = 0, float("nan")
    bar = tqdm(total=total_steps, desc=f"train {model.name}", disable=not progress, unit="step")
    for epoch in range(config.epochs):
        order = rng.permutation(train_indices)
        for start in range(0, order.size, config.batch_size):
            model.on_training_progress(step / total_steps)
            batch = make_batch(data, order[start : start + config.batch_size])
            loss_value = train_step(model, optimizer, batch, loss_fn)
            step += 1
            bar.update()
            bar.set_postfix(epoch=epoch + 1, loss=f"{loss_value:.4f}")
    bar.close()
    model.on_training_progress(1.0)
    model.eval()
    seconds = time.perf_counter() - started
    log.info(
        "trained %s: %d steps in %.1f s, last loss %.4f", model.name, step, seconds, loss_value
    )
    return TrainResult(model, seconds, config.epochs, loss_value)
