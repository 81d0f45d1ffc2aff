"""Evaluation on held-out splits: AUC and logloss (scikit-learn) of the eval-mode model."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.metrics import log_loss, roc_auc_score

from offline_jobs.data.dataset import InteractionData, make_batch
from offline_jobs.training.loop import batch_tensors
from prerank_contract.manifest import SplitMetrics
from prerank_model.models.base import PrerankModel


@torch.no_grad()
def predict_logits(
    model: PrerankModel, data: InteractionData, indices: np.ndarray, batch_size: int
) -> np.ndarray:
    """Eval-mode logits [n] of the given samples (the hard meta query for FIT)."""
    model.eval()
    chunks = [
        model(*batch_tensors(make_batch(data, indices[start : start + batch_size]))).numpy()
        for start in range(0, indices.size, batch_size)
    ]
    return np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.float32)


def evaluate(
    model: PrerankModel,
    data: InteractionData,
    batch_size: int,
    splits: tuple[str, ...] = ("validation", "test"),
) -> dict[str, SplitMetrics]:
    """AUC and logloss per split."""
    results = {}
    for split in splits:
        indices = data.splits[split]
        probabilities = 1.0 / (1.0 + np.exp(-predict_logits(model, data, indices, batch_size)))
        labels = data.labels[indices]
        results[split] = SplitMetrics(
            auc=float(roc_auc_score(labels, probabilities)),
            logloss=float(log_loss(labels, probabilities, labels=[0.0, 1.0])),
            samples=int(indices.size),
        )
    return results
