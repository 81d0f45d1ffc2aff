"""The scale benchmark's steps on a small synthetic catalogue: a world of that many items is
trained and built by the job's code, published (every scratch key removed after), served from
Redis with every timed request answered from the feature store; the report states the p50 ratio
against the 1.2 goal."""

from __future__ import annotations

from pathlib import Path

from offline_jobs.training.config import TrainConfig
from research.scale import ScaleRow, ScaleSettings, report, run_scale
from tests.conftest import TEST_GATE, TINY_MODEL, TINY_WORLD

ITEMS = (500, 2_000)


def test_each_step_on_a_small_catalogue(redis_client, tmp_path: Path) -> None:
    settings = ScaleSettings(
        scale_items=ITEMS,
        scale_world=TINY_WORLD,
        scale_model=TINY_MODEL,
        scale_train=TrainConfig(epochs=1, batch_size=256),
        scale_candidates=200,
        scale_requests=40,
        scale_warmup=5,
        scale_rounds=4,
        scale_precompute_batch=512,
        gate=TEST_GATE,
    )
    rows = run_scale(settings, redis_client, tmp_path)
    assert [row.items for row in rows] == list(ITEMS)
    for row in rows:
        assert row.train_s > 0 and 0 < row.test_auc < 1
        assert row.precompute_s > 0 and row.build_s > row.precompute_s / 10
        assert row.publish_s > 0 and row.redis_mib > 0
        assert row.ready_s > 0 and row.rss_mib > 0 and 0 < row.p50_ms <= row.p99_ms
        assert {"gather", "user_tower", "scorer"} <= set(row.stages_ms)
    assert not list(redis_client.scan_iter(match="scale-*"))  # the scratch prefix is removed


def test_the_report_states_the_ratio_and_per_item_costs() -> None:
    rows = [
        ScaleRow(10_000, 5.0, 0.6, 0.01, 2.0, 0.02, 5.0, 0.4, 120.0, 1.0, 2.0),
        ScaleRow(1_000_000, 9.0, 0.6, 0.5, 9.0, 1.0, 350.0, 1.0, 420.0, 1.3, 2.0),
    ]
    text = report(ScaleSettings(), rows)
    assert "**MISS**" in text and "= 1.30" in text
    assert "precompute 0.50 us" in text and "publish 1.00 us" in text
    assert "service start 1.00 us" in text
