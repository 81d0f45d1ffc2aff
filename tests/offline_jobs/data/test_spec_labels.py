"""Labels from a rating threshold, and negatives drawn for a log of positives only."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from offline_jobs.data.spec import load_spec
from offline_jobs.data.spec_data import load_spec_data
from tests.offline_jobs.data.shop_files import ROWS, small_log, spec_for


def test_a_rating_threshold_labels_and_drop_skips(tmp_path: Path) -> None:
    stars = [1 + r % 5 for r in range(ROWS)]
    log = small_log(stars=stars).drop_columns(["clicked"])
    interactions = {"path": "log.csv", "user": "user_id", "item": "item_id", "timestamp": "ts"}
    rating = {"column": "stars", "positive_at_least": 4, "drop": [3]}
    spec = spec_for(tmp_path, log, interactions=interactions | {"rating": rating})
    data = load_spec_data(load_spec(spec))
    kept = [s for s in stars if s != 3]
    assert data.user_ids.size == len(kept) and data.details["dropped_ratings"] == ROWS - len(kept)
    assert sorted(data.labels.tolist()) == sorted(float(s >= 4) for s in kept)


def test_negatives_are_drawn_per_positive_in_its_split_never_its_own_item(
    tmp_path: Path,
) -> None:
    log = small_log().drop_columns(["clicked"])
    interactions = {"path": "log.csv", "user": "user_id", "item": "item_id", "timestamp": "ts"}
    for sampler in ("uniform", "popularity"):
        negatives = {"per_positive": 3, "sampler": sampler, "seed": 7}
        spec = spec_for(tmp_path, log, interactions=interactions, negatives=negatives)
        data = load_spec_data(load_spec(spec))
        assert data.user_ids.size == 4 * ROWS and data.labels.sum() == ROWS
        positive_items = data.item_ids[:ROWS]
        drawn = data.item_ids[ROWS:].reshape(ROWS, 3)
        assert (drawn != positive_items[:, None]).all()
        assert (data.user_ids[ROWS:].reshape(ROWS, 3) == data.user_ids[:ROWS, None]).all()
        assert (data.timestamps[ROWS:].reshape(ROWS, 3) == data.timestamps[:ROWS, None]).all()
        for indices in data.splits.values():
            positives = indices[indices < ROWS]
            expected = ROWS + (positives[:, None] * 3 + np.arange(3)).ravel()
            assert sorted(indices[indices >= ROWS].tolist()) == sorted(expected.tolist())
        again = load_spec_data(load_spec(spec))
        assert again.fingerprint() == data.fingerprint()  # seeded
