"""The auxiliary losses some models train with besides the BCE: DAT's adaptive-mimic loss and
IntTower's contrastive interaction regularisation (CIR), each from the batch's encoded pairs."""

from __future__ import annotations

import torch
from torch import nn

from prerank_model.models.base import PairHeads
from prerank_model.models.dat import DAT


def adaptive_mimic_loss(
    model: DAT,
    user_features: torch.Tensor,
    item_features: torch.Tensor,
    pairs: PairHeads,
    labels: torch.Tensor,
) -> torch.Tensor:
    """DAT: mean_b y_b (||a_u - sg(p_v)||^2 + ||a_v - sg(p_u)||^2), a scalar.

    user_features [B, S_u], item_features [B, S_i]; pairs.user_heads [B, 1, 1, D] (p_u),
    pairs.item_heads [B, 1, D] (p_v); labels [B]. The stop-gradient (sg) leaves the towers to
    the BCE: this loss moves only the augmented vectors a_u, a_v.
    """
    user_vector = pairs.user_heads.reshape(-1, model.dim).detach()
    item_vector = pairs.item_heads.reshape(-1, model.dim).detach()
    user_gap = (model.user_augmented_vector(user_features) - item_vector).pow(2).sum(-1)
    item_gap = (model.item_augmented_vector(item_features) - user_vector).pow(2).sum(-1)
    return (labels * (user_gap + item_gap)).mean()


def contrastive_loss(
    pairs: PairHeads, labels: torch.Tensor, deepest_heads: int, temperature: float
) -> torch.Tensor:
    """IntTower's CIR: the in-batch InfoNCE of the positives, a scalar (0 without positives).

    pairs.user_heads [B, 1, L * H_u, d] (the last `deepest_heads` = H_u from the deepest layer),
    pairs.item_heads [B, H_v, d]; labels [B]. Each positive's user is contrasted with every item
    of the batch, cos / `temperature`.
    """
    deepest = pairs.user_heads[:, 0, -deepest_heads:]  # [B, H_u, d]
    users = nn.functional.normalize(deepest.mean(1), dim=-1)
    items = nn.functional.normalize(pairs.item_heads.mean(1), dim=-1)
    similarities = users @ items.T / temperature  # [B, B]
    targets = torch.arange(labels.shape[0])
    per_sample = nn.functional.cross_entropy(similarities, targets, reduction="none")
    return (labels * per_sample).sum() / labels.sum().clamp_min(1.0)
