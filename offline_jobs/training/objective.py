"""What training minimises: the BCE of a model's logits plus the model's auxiliary loss, if it
has one, each weighted as its `ModelConfig` says."""

from __future__ import annotations

import torch
from torch import nn

from offline_jobs.training.losses import adaptive_mimic_loss, contrastive_loss
from prerank_model.models.base import PairHeads, PrerankModel
from prerank_model.models.dat import DAT
from prerank_model.models.int_tower import IntTower


def auxiliary_loss(
    model: PrerankModel,
    user_features: torch.Tensor,
    item_features: torch.Tensor,
    pairs: PairHeads,
    labels: torch.Tensor,
) -> torch.Tensor | None:
    """The model's weighted auxiliary loss on a batch of encoded pairs (a scalar): DAT's
    adaptive-mimic loss, IntTower's CIR; None for the other models."""
    if isinstance(model, DAT):
        mimic = adaptive_mimic_loss(model, user_features, item_features, pairs, labels)
        return model.config.mimic_loss_weight * mimic
    if isinstance(model, IntTower):
        config = model.config
        cir = contrastive_loss(pairs, labels, config.user_heads, config.contrastive_temperature)
        return config.contrastive_weight * cir
    return None


class TrainingObjective(nn.Module):
    """The training loss of one model as a module. Under torchrun, DistributedDataParallel wraps
    this module, not the model: DDP averages gradients only for passes through the forward of
    the module it wraps, and the loss is computed here, outside the model."""

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
        -> the batch's mean loss (a scalar): BCE of the logits plus the auxiliary loss, both
        from one encoding of the pairs."""
        pairs = self.model.encode_pairs(user_features, history, item_features)
        logits = self.model.score(pairs.user_heads, pairs.item_heads, pairs.meta_index)
        auxiliary = auxiliary_loss(self.model, user_features, item_features, pairs, labels)
        loss = self.loss_fn(logits, labels)
        return loss if auxiliary is None else loss + auxiliary
