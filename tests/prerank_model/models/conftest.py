"""Fixtures of the model tests; the checks every model shares live in model_checks.py."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from offline_jobs.data.dataset import InteractionData, make_batch
from offline_jobs.training.loop import batch_tensors

# Before any test module imports it, so that its plain asserts report their values.
pytest.register_assert_rewrite("tests.prerank_model.models.model_checks")


@pytest.fixture(scope="module")
def pairs(tiny_data: InteractionData) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """40 test pairs (user_features, history, item_features)."""
    return batch_tensors(make_batch(tiny_data, tiny_data.splits["test"][:40]))


@pytest.fixture(autouse=True)
def one_intra_op_thread() -> Iterator[None]:
    """Tiny tensors: one intra-op thread is many times faster than two on a busy machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
