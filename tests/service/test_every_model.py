"""Every registered model (FIT, its ablations, the five baselines) exports with parity, publishes,
and answers /prerank through one real service that hot-swaps from one to the next."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import httpx
import pytest
import redis

from offline_jobs.publish import publish_bundle
from prerank_contract.gate import GateConfig
from prerank_contract.keys import RedisKeys
from prerank_model.models import MODELS
from tests.conftest import (
    TINY_TRAIN,
    Bundle,
    RunningService,
    make_bundle,
    start_service,
    stop_service,
    train_tiny,
)

# One epoch of a tiny world: some models are barely better than chance here, and this test is
# about serving every kind of graph, not accuracy: the gate is opened for it.
OPEN_GATE = GateConfig(min_auc=0.0, max_auc_drop=1.0)
SWAP_TIMEOUT = 30.0


@pytest.fixture(scope="module")
def bundles(tiny_data, job_settings) -> dict[str, Bundle]:
    settings = job_settings.model_copy(
        update={"train": TINY_TRAIN.model_copy(update={"epochs": 1})}
    )
    return {
        name: make_bundle(train_tiny(name, tiny_data, settings), tiny_data, settings)
        for name in sorted(MODELS)
    }


@pytest.fixture(scope="module")
def served(
    bundles: dict[str, Bundle], redis_client: redis.Redis, key_prefix: str, tmp_path_factory
) -> Iterator[tuple[RunningService, RedisKeys]]:
    keys = RedisKeys(f"{key_prefix}every-{uuid.uuid4().hex[:6]}:")
    for index, bundle in enumerate(bundles.values()):
        publish_bundle(
            redis_client,
            keys,
            bundle.path,
            chunk_bytes=1 << 16,
            keep_versions=len(bundles),
            gate=OPEN_GATE,
            activate=index == 0,
            progress=False,
        )
    service = start_service(
        {
            "PRERANK_REDIS_KEY_PREFIX": keys.prefix,
            "PRERANK_POLL_INTERVAL_SECONDS": "0.1",
            "PRERANK_GATE__MIN_AUC": "0",
            "PRERANK_WARMUP_CANDIDATES": "100",
        },
        tmp_path_factory.mktemp("every") / "service.log",
    )
    yield service, keys
    stop_service(service)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_model_is_published_and_answers_prerank(
    name: str, bundles, served, redis_client, tiny_data
) -> None:
    service, keys = served
    manifest = bundles[name].manifest
    assert manifest.model_name == name
    assert max(manifest.parity.values()) <= manifest.parity_tolerance
    redis_client.set(keys.active, manifest.version)
    deadline = time.monotonic() + SWAP_TIMEOUT
    while httpx.get(f"{service.url}/readyz").json().get("version") != manifest.version:
        assert time.monotonic() < deadline, service.log()
        time.sleep(0.05)
    candidates = tiny_data.catalogue[:50].tolist()
    response = httpx.post(
        f"{service.url}/prerank", json={"user_id": 3, "candidates": candidates}, timeout=30
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model_version"] == manifest.version
    assert sorted(item["item_id"] for item in body["items"]) == sorted(candidates)
    scores = [item["score"] for item in body["items"]]
    assert all(0.0 < s < 1.0 for s in scores) and len(set(scores)) > 1
