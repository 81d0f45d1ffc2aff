"""The memory benchmark's tools: a tiled bundle is a valid bundle of the asked size, and measuring
2 workers reads both workers' memory, with the table's pages shared (each worker touched all of
it at warm-up, scoring the whole catalogue for the fallback order)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from prerank_contract.bundle import verify_bundle_dir
from prerank_contract.manifest import ITEM_HEADS_FILE, ITEM_IDS_FILE
from research.memory import MemorySettings, measure, report, tiled_bundle

ITEMS = 20_000


def test_a_tiled_bundle_verifies_and_has_the_asked_size(fit_bundle, tmp_path: Path) -> None:
    bundle = tiled_bundle(fit_bundle.path, tmp_path, ITEMS)
    manifest = verify_bundle_dir(bundle)  # every sha256 recomputed
    assert manifest.item_count == ITEMS
    assert np.array_equal(np.load(bundle / ITEM_IDS_FILE), np.arange(1, ITEMS + 1))
    heads = np.load(bundle / ITEM_HEADS_FILE)
    original = np.load(fit_bundle.path / ITEM_HEADS_FILE)
    assert heads.shape[0] == ITEMS and np.array_equal(heads[: len(original)], original)


def test_two_workers_are_measured_and_share_the_table(fit_bundle, tmp_path: Path) -> None:
    settings = MemorySettings(memory_items=ITEMS, memory_requests=30, load_candidates=100)
    bundle = tiled_bundle(fit_bundle.path, tmp_path / "bundles", ITEMS)
    figures = measure(settings, bundle, 2, tmp_path)
    assert len(figures) == 2 and len({f["pid"] for f in figures}) == 2
    assert all(f["uss_mib"] < f["pss_mib"] < f["rss_mib"] for f in figures)  # pages shared
    assert "| 2 |" in report(settings, bundle, figures)
