"""The training objective: the BCE of the model's own logits, plus exactly the weighted
auxiliary loss of the models that have one."""

from __future__ import annotations

import pytest
import torch

from offline_jobs.data.dataset import InteractionData, make_batch
from offline_jobs.settings import JobSettings
from offline_jobs.training.loop import batch_tensors, new_model
from offline_jobs.training.objective import TrainingObjective, auxiliary_loss

AUXILIARY_MODELS = ("dat", "inttower")


@pytest.mark.parametrize("name", ["two_tower", "fit", "cold", "ranktower", *AUXILIARY_MODELS])
def test_the_objective_is_the_bce_of_forward_plus_the_auxiliary_loss(
    name: str, tiny_data: InteractionData, job_settings: JobSettings
) -> None:
    model = new_model(name, tiny_data.schema, job_settings.model, seed=1).train()
    batch = make_batch(tiny_data, tiny_data.splits["train"][:64])
    user_features, history, item_features = batch_tensors(batch)
    labels = torch.from_numpy(batch.labels)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    with torch.no_grad():
        objective = TrainingObjective(model, loss_fn)(user_features, history, item_features, labels)
        bce = loss_fn(model(user_features, history, item_features), labels)
        pairs = model.encode_pairs(user_features, history, item_features)
        auxiliary = auxiliary_loss(model, user_features, item_features, pairs, labels)
    assert (auxiliary is not None) == (name in AUXILIARY_MODELS)
    expected = bce if auxiliary is None else bce + auxiliary
    assert float(objective) == float(expected)
    if auxiliary is not None:
        assert float(auxiliary) > 0  # so the sum above could have been told from the BCE
