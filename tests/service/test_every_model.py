"""Every registered model (FIT, its ablations, the five baselines) exports with parity, publishes,
and answers /prerank through one real service that hot-swaps from one to the next, with the
model's own eval-mode PyTorch scores."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
import redis

from offline_jobs.data.dataset import InteractionData
from offline_jobs.release.publish import publish_bundle, publish_user_features
from prerank_contract.gate import GateConfig
from prerank_contract.keys import RedisKeys
from prerank_model.models import MODELS
from prerank_model.models.base import PrerankModel
from research.service_process import ServiceProcess
from tests.conftest import (
    ORPHAN_MIN_IDLE_SECONDS,
    TINY_TRAIN,
    Bundle,
    eval_scores,
    make_bundle,
    start_service,
    train_tiny,
)

# One epoch of a tiny world: some models are barely better than chance here, and this test is
# about serving every kind of graph, not accuracy: the gate is opened for it.
OPEN_GATE = GateConfig(min_auc=0.0, max_auc_drop=1.0)
SWAP_TIMEOUT = 30.0
CANDIDATES = 50
SCORE_TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def trained(tiny_data, job_settings) -> dict[str, tuple[PrerankModel, Bundle]]:
    settings = job_settings.model_copy(
        update={"train": TINY_TRAIN.model_copy(update={"epochs": 1})}
    )
    models = {name: train_tiny(name, tiny_data, settings) for name in sorted(MODELS)}
    return {
        name: (model, make_bundle(model, tiny_data, settings)) for name, model in models.items()
    }


@pytest.fixture(scope="module")
def served(
    trained: dict[str, tuple[PrerankModel, Bundle]],
    redis_client: redis.Redis,
    key_prefix: str,
    tiny_data: InteractionData,
    tmp_path_factory,
) -> Iterator[tuple[ServiceProcess, RedisKeys]]:
    keys = RedisKeys(f"{key_prefix}every-{uuid.uuid4().hex[:6]}:")
    publish_user_features(redis_client, keys, tiny_data, 100, progress=False)
    for index, (_, bundle) in enumerate(trained.values()):
        publish_bundle(
            redis_client,
            keys,
            bundle.path,
            chunk_bytes=1 << 16,
            keep_versions=len(trained),
            gate=OPEN_GATE,
            orphan_min_idle_seconds=ORPHAN_MIN_IDLE_SECONDS,
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
    service.stop()


@pytest.mark.parametrize("name", sorted(MODELS))
def test_model_is_published_and_answers_prerank(
    name: str, trained, served, redis_client, tiny_data
) -> None:
    service, keys = served
    model, bundle = trained[name]
    manifest = bundle.manifest
    assert manifest.model_name == name
    assert max(manifest.parity.values()) <= manifest.parity_tolerance
    redis_client.set(keys.active, manifest.version)
    deadline = time.monotonic() + SWAP_TIMEOUT
    while httpx.get(f"{service.url}/readyz").json().get("version") != manifest.version:
        assert time.monotonic() < deadline, service.log()
        time.sleep(0.05)
    user = int(tiny_data.user_ids[0])  # one with a history in the feature store
    candidates = tiny_data.catalogue[:CANDIDATES].tolist()
    response = httpx.post(
        f"{service.url}/prerank", json={"user_id": user, "candidates": candidates}, timeout=30
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model_version"] == manifest.version
    assert sorted(item["item_id"] for item in body["items"]) == sorted(candidates)
    served_scores = {item["item_id"]: item["score"] for item in body["items"]}
    scores = np.array([served_scores[item] for item in candidates])
    assert ((scores > 0.0) & (scores < 1.0)).all()
    # The served graph is the model: a model that one epoch left constant (a dead LSS column
    # layer, as fit_no_mqm with one seed of this tiny world) is served as constant, no more.
    expected = eval_scores(model, tiny_data, user, np.array(candidates))
    assert np.abs(scores - expected).max() <= SCORE_TOLERANCE
