"""Bundle discovery: the newest bundle of a model by its version id, or a message to train
first."""

from __future__ import annotations

from pathlib import Path

import pytest

from research.bench.discovery import BenchError, newest_bundle
from research.bench.targets import FIT


def test_a_missing_bundle_says_to_train_first(tmp_path: Path) -> None:
    with pytest.raises(BenchError, match="make train"):
        newest_bundle(tmp_path, FIT)
    for name in ("fit-20260101T000000Z-a", "fit-20270101T000000Z-b", "fit_no_mqm-20280101T0Z-c"):
        (tmp_path / name).mkdir()
    assert newest_bundle(tmp_path, FIT).name == "fit-20270101T000000Z-b"
