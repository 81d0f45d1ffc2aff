"""The embedded synthetic world: deterministic, causal histories, and a planted interaction that
FIT captures better than a dot-product Two-Tower given the same budget."""

from __future__ import annotations

import numpy as np
import pytest

from offline_jobs.data.synthetic import SyntheticConfig, generate_synthetic
from offline_jobs.settings import JobSettings
from offline_jobs.training.evaluate import evaluate
from offline_jobs.training.loop import TrainConfig, new_model, train_model
from prerank_model.config import ModelConfig

SMALL = SyntheticConfig(seed=3, num_users=150, num_items=400, events_per_user=15)


def test_same_seed_same_data_other_seed_other_data() -> None:
    a = generate_synthetic(SMALL, progress=False)
    b = generate_synthetic(SMALL, progress=False)
    c = generate_synthetic(SMALL.model_copy(update={"seed": 4}), progress=False)
    assert a.fingerprint() == b.fingerprint() != c.fingerprint()


def test_histories_hold_earlier_positives_of_the_same_user_only() -> None:
    """A history is the user's warm-up positives followed by their positive samples strictly
    before the sample's time: its tail must equal the latest of those samples, in order."""
    config = SMALL.model_copy(update={"max_history": 4})
    data = generate_synthetic(config, progress=False)
    positives: dict[int, list[tuple[int, int]]] = {}
    for user, item, label, t in zip(
        data.user_ids, data.item_ids, data.labels, data.timestamps, strict=True
    ):
        if label:
            positives.setdefault(int(user), []).append((int(t), int(item)))
    checked_with_samples = 0
    for i in range(0, data.labels.size, 7):
        user, t = int(data.user_ids[i]), int(data.timestamps[i])
        history = [int(h) for h in data.histories[i] if h]
        assert (data.histories[i][: config.max_history - len(history)] == 0).all()  # left-padded
        earlier = [item for when, item in sorted(positives.get(user, [])) if when < t]
        tail = earlier[-len(history) :] if history else []
        assert history[len(history) - len(tail) :] == tail
        if len(history) == config.max_history and len(earlier) >= config.max_history:
            assert history == earlier[-config.max_history :]
            checked_with_samples += 1
    assert checked_with_samples > 10


def test_ids_and_sizes_follow_the_config() -> None:
    data = generate_synthetic(SMALL, progress=False)
    assert data.num_users == SMALL.num_users and data.num_items == SMALL.num_items
    assert data.catalogue.tolist() == list(range(1, SMALL.num_items + 1))
    assert (data.item_features[1:, 0] == np.arange(1, SMALL.num_items + 1)).all()
    assert set(np.unique(data.labels)) == {0.0, 1.0}
    splits = data.splits
    assert sum(s.size for s in splits.values()) == data.labels.size
    assert not set(splits["train"]) & set(splits["test"])


def test_too_few_items_for_the_brands_is_refused() -> None:
    with pytest.raises(ValueError, match="every brand needs an item"):
        generate_synthetic(SMALL.model_copy(update={"num_items": 100}), progress=False)


def test_fit_beats_two_tower_on_the_planted_interaction() -> None:
    data = generate_synthetic(
        SyntheticConfig(seed=21, num_users=1000, num_items=1000, events_per_user=60),
        progress=False,
    )
    budget = TrainConfig(seed=1, epochs=3, batch_size=512)
    model_config = ModelConfig()
    auc = {}
    for name in ("fit", "two_tower"):
        model = new_model(name, data.schema, model_config, budget.seed)
        train_model(model, data, budget, progress=False)
        auc[name] = evaluate(model, data, 8192, splits=("test",))["test"].auc
    assert auc["fit"] > auc["two_tower"] + 0.01, auc


def test_fit_beats_two_tower_on_the_default_dataset() -> None:
    """The claim `make run` prints, on the exact default world, model sizes and budget."""
    settings = JobSettings()
    data = generate_synthetic(settings.synthetic, progress=False)
    auc = {}
    for name in ("fit", "two_tower"):
        model = new_model(name, data.schema, settings.model, settings.train.seed)
        train_model(model, data, settings.train, progress=False)
        auc[name] = evaluate(model, data, settings.train.eval_batch_size, splits=("test",))
    assert auc["fit"]["test"].auc > auc["two_tower"]["test"].auc + 0.03, auc
