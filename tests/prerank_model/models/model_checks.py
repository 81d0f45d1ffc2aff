"""Checks every model must pass, shared by the per-model test files: the interface shapes,
forward = composition, the serving path, a training step that learns, and the ONNX export."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from model_export.onnx_export import ParitySample, check_parity, export_graphs
from offline_jobs.data.dataset import InteractionData, make_batch
from offline_jobs.training.loop import batch_loss, batch_tensors
from offline_jobs.training.objective import TrainingObjective
from prerank_model.models.base import PrerankModel

Tensors = tuple[torch.Tensor, torch.Tensor, torch.Tensor]
TOLERANCE = 1e-5


def sample_pairs(data: InteractionData, count: int) -> Tensors:
    """(user_features, history, item_features) of the first `count` test samples."""
    return batch_tensors(make_batch(data, data.splits["test"][:count]))


@torch.no_grad()
def check_shapes(
    model: PrerankModel, pairs: Tensors, user_shape: tuple[int, ...], item_shape: tuple[int, ...]
) -> None:
    """encode_user -> [B, *user_shape] (K, H_u, d); encode_items -> ([N, *item_shape], [N])."""
    user_features, history, item_features = pairs
    batch = user_features.shape[0]
    assert model.encode_user(user_features, history).shape == (batch, *user_shape)
    assert user_shape[0] == model.num_meta_queries
    item_heads, meta_index = model.encode_items(item_features)
    assert item_heads.shape == (batch, *item_shape)
    assert meta_index.shape == (batch,)
    assert meta_index.dtype == torch.int64
    assert 0 <= int(meta_index.min()) <= int(meta_index.max()) < model.num_meta_queries


@torch.no_grad()
def check_forward_is_the_composition(model: PrerankModel, pairs: Tensors) -> None:
    """Eval-mode forward == score(encode_user, encode_items) on the same pairs."""
    model.eval()
    user_features, history, item_features = pairs
    item_heads, meta_index = model.encode_items(item_features)
    composed = model.score(model.encode_user(user_features, history), item_heads, meta_index)
    torch.testing.assert_close(model(*pairs), composed, atol=TOLERANCE, rtol=0)


@torch.no_grad()
def check_serving_equals_the_pairs(
    model: PrerankModel, data: InteractionData, candidates: int = 30
) -> torch.Tensor:
    """One user's heads [K, H_u, d] scored against N candidates in one `score` call equal the
    per-pair forward of that user with each candidate. Returns the served logits [N]."""
    model.eval()
    user_features, history, _ = sample_pairs(data, 1)
    items = torch.from_numpy(data.item_features[data.catalogue[:candidates]])
    user_heads = model.encode_user(user_features, history)[0]  # [K, H_u, d]
    item_heads, meta_index = model.encode_items(items)
    served = model.score(user_heads, item_heads, meta_index)
    assert served.shape == (candidates,)
    per_pair = model(
        user_features.expand(candidates, -1), history.expand(candidates, -1, -1), items
    )
    torch.testing.assert_close(served, per_pair, atol=TOLERANCE, rtol=0)
    assert served.std() > 0, "the candidates must be told apart for this check to mean anything"
    return served


def check_training_reduces_the_loss(
    model: PrerankModel, data: InteractionData, steps: int = 15
) -> tuple[float, float]:
    """A few Adam steps on one small batch, through the trainer's own loss. (first, last)."""
    torch.manual_seed(0)
    batch = make_batch(data, data.splits["train"][:256])
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    model.train()
    losses = []
    for _ in range(steps):
        loss = batch_loss(TrainingObjective(model, loss_fn), batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    model.eval()
    assert all(np.isfinite(losses))
    assert losses[-1] < 0.9 * losses[0], losses
    return losses[0], losses[-1]


def check_export_parity(model: PrerankModel, data: InteractionData, out_dir: Path) -> None:
    """Both ONNX graphs (user tower, scorer) of the model agree with PyTorch on real rows."""
    model.eval()
    batch = make_batch(data, data.splits["test"][:3])
    with torch.no_grad():
        item_heads, meta_index = model.encode_items(
            torch.from_numpy(data.item_features[data.catalogue[:20]])
        )
    sample = ParitySample(
        batch.user_features, batch.history, item_heads.numpy(), meta_index.numpy()
    )
    export_graphs(model, sample, out_dir)
    parity = check_parity(model, sample, out_dir, TOLERANCE)
    assert all(diff <= TOLERANCE for diff in parity.values()), parity
