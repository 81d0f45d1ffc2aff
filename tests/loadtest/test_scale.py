"""The scale benchmark's steps on a small tiled catalogue: precompute runs over every item,
publish leaves nothing behind in Redis and reports its memory, the service answers every timed
request; the report states the p50 ratio against the 1.2 goal."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from loadtest.memory import tiled_bundle
from loadtest.scale import (
    ScaleRow,
    ScaleSettings,
    report,
    serve_and_time,
    time_precompute,
    time_publish,
)
from tests.conftest import TEST_GATE

ITEMS = 3_000


def test_each_step_on_a_small_catalogue(fit_bundle, redis_client, tmp_path: Path) -> None:
    settings = ScaleSettings(
        scale_candidates=200, scale_requests=40, scale_warmup=5, gate=TEST_GATE
    )
    bundle = tiled_bundle(fit_bundle.path, tmp_path / "bundles", ITEMS)
    assert time_precompute(bundle, settings) > 0
    keys_before = redis_client.dbsize()
    seconds, grown_mib = time_publish(bundle, settings, redis_client)
    assert seconds > 0 and grown_mib > 0
    assert redis_client.dbsize() == keys_before  # the scratch prefix is removed
    ready, rss, latencies = serve_and_time(bundle, settings, tmp_path)
    assert ready > 0 and rss > 0 and latencies.shape == (40,) and np.all(latencies > 0)


def test_the_report_states_the_ratio_and_per_item_costs() -> None:
    rows = [
        ScaleRow(10_000, 0.01, 0.02, 5.0, 0.4, 120.0, 1.0, 2.0),
        ScaleRow(1_000_000, 0.5, 1.0, 350.0, 1.0, 420.0, 1.3, 2.0),
    ]
    text = report(ScaleSettings(), rows)
    assert "**MISS**" in text and "= 1.30" in text
    assert "precompute 0.50 us" in text and "publish 1.00 us" in text
