"""What a shipped spec must read to stand for a built-in loader: the same samples, labels, times,
histories, feature values, field layout and random split (tests of the format adapters)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from offline_jobs.data.adapters import SPECS_DIR
from offline_jobs.data.converted import TABLES
from offline_jobs.data.dataset import InteractionData
from offline_jobs.data.spec import load_spec
from offline_jobs.data.spec_data import load_spec_data

# spec data, "users" or "items" -> [V + 1] the built-in loader's id of each spec index (0: padding)
BuiltinIds = Callable[[InteractionData, str], np.ndarray]


def shipped_spec_on(tables: Path, name: str, tmp_path: Path, **overrides: Any) -> Path:
    """The shipped spec `name`, its tables read from `tables` instead (`overrides` replace
    top-level keys)."""
    document: dict[str, Any] = yaml.safe_load((SPECS_DIR / f"{name}.yaml").read_text())
    document |= overrides
    for key in TABLES:
        if key in document:
            document[key]["path"] = str(tables / f"{key}.parquet")
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def raw_ids(data: InteractionData, side: str) -> np.ndarray:
    """The raw id of each index, by the spec data's vocabulary: the built-in id of a loader whose
    ids are the raw integer ids (MovieLens)."""
    assert data.vocabulary is not None
    values = getattr(data.vocabulary, side).values.to_pylist()
    return np.array([0, *values], dtype=np.int64)


def ranked_ids(data: InteractionData, side: str) -> np.ndarray:
    """Each index itself: the built-in id of a loader that numbers the ids 1..V in their sorted
    order, as the spec's vocabulary does (Amazon, Taobao; the caller checks the raw ids)."""
    assert data.vocabulary is not None
    return np.arange(getattr(data.vocabulary, side).vocab_size, dtype=np.int64)


def assert_same_samples(
    spec: InteractionData, builtin: InteractionData, builtin_ids: BuiltinIds = raw_ids
) -> None:
    users, items = builtin_ids(spec, "users"), builtin_ids(spec, "items")
    np.testing.assert_array_equal(users[spec.user_ids], builtin.user_ids)
    np.testing.assert_array_equal(items[spec.item_ids], builtin.item_ids)
    np.testing.assert_array_equal(spec.labels, builtin.labels)
    np.testing.assert_array_equal(spec.timestamps, builtin.timestamps)
    np.testing.assert_array_equal(items[spec.histories], builtin.histories)
    # every feature but the ids (column 0), row by row of the samples
    np.testing.assert_array_equal(
        spec.user_features[spec.user_ids][:, 1:], builtin.user_features[builtin.user_ids][:, 1:]
    )
    np.testing.assert_array_equal(
        spec.item_features[spec.item_ids][:, 1:], builtin.item_features[builtin.item_ids][:, 1:]
    )
    fields = [(f.name, f.source, f.slots) for f in spec.schema.fields]
    assert fields == [(f.name, f.source, f.slots) for f in builtin.schema.fields]
    sizes = {f.name: f.vocab_size for f in spec.schema.fields if f.name != "item_id"}
    assert sizes == {f.name: f.vocab_size for f in builtin.schema.fields if f.name != "item_id"}
    # the random split's seed draws the built-in loader's split: the same samples in each part
    for name, indices in builtin.splits.items():
        np.testing.assert_array_equal(spec.splits[name], indices, err_msg=name)


def assert_temporal_split(tables: Path, name: str, tmp_path: Path) -> None:
    """The shipped temporal spec `name` over `tables`: the validation after every training
    sample, the test after every validation sample, the test share as the spec says."""
    spec = load_spec(shipped_spec_on(tables, name, tmp_path))
    data = load_spec_data(spec)
    times = {split: data.timestamps[indices] for split, indices in data.splits.items()}
    assert times["train"].max() <= times["validation"].min()
    assert times["validation"].max() <= times["test"].min()
    assert data.splits["test"].size == round(data.labels.size * spec.split.test)
