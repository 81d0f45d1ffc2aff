"""/prerank over HTTP against a real uvicorn serving the published tiny FIT from real Redis."""

from __future__ import annotations

import re

import httpx
import numpy as np
import orjson
import pytest

from offline_jobs.data.dataset import InteractionData
from tests.conftest import eval_scores
from tests.service.stages import STAGES


def post(service, body: object) -> httpx.Response:
    return httpx.post(f"{service.url}/prerank", json=body, timeout=30)


def known_user(tiny_data: InteractionData) -> int:
    return int(tiny_data.user_ids[0])


def test_valid_request_scores_every_candidate_best_first(service, published_fit, tiny_data):
    candidates = tiny_data.catalogue[:200].tolist()
    response = post(service, {"user_id": known_user(tiny_data), "candidates": candidates})
    assert response.status_code == 200
    body = response.json()
    assert body["model_version"] == published_fit.manifest.version
    assert sorted(item["item_id"] for item in body["items"]) == sorted(candidates)
    scores = [item["score"] for item in body["items"]]
    assert scores == sorted(scores, reverse=True)
    assert all(0.0 < s < 1.0 for s in scores)
    assert body["user_source"] == "feature_store"
    assert body["cold_start"] is False and body["degraded"] is False


def test_empty_candidates(service, tiny_data):
    response = post(service, {"user_id": known_user(tiny_data), "candidates": []})
    assert response.status_code == 200
    assert response.json()["items"] == []


def test_unknown_and_duplicate_items_are_reported(service, tiny_data):
    known = tiny_data.catalogue[:5].tolist()
    unknown = [10_000_000, 10_000_001]
    body = post(service, {"user_id": 1, "candidates": [*known, unknown[0], known[0], unknown[1]]})
    body = body.json()
    assert sorted(i["item_id"] for i in body["items"]) == sorted(known)
    assert body["unknown_items"] == unknown
    assert body["duplicate_items"] == [known[0]]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"user_id": "abc", "candidates": [1]}, ["body", "user_id"]),
        ({"user_id": 1}, ["body", "candidates"]),
        ({"user_id": 1, "candidates": [1, "two"]}, ["body", "candidates", 1]),
        ({"user_id": 1, "candidates": [1], "top_k": 0}, ["body", "top_k"]),
        ({"user_id": 1, "candidates": [1], "surprise": True}, ["body", "surprise"]),
        (
            {"user_id": 1, "candidates": [1], "user_features": {"nope": 1}},
            ["body", "user_features", "nope"],
        ),
        (
            {"user_id": 1, "candidates": [1], "user_features": {"gender": 99}},
            ["body", "user_features", "gender"],
        ),
        ({"user_id": 1, "candidates": [1, 2**63]}, ["body", "candidates", 1]),
        ({"user_id": 1, "candidates": [1], "history": [-(2**63) - 1]}, ["body", "history", 0]),
        ({"user_id": 2**64, "candidates": [1]}, ["body", "user_id"]),
    ],
)
def test_malformed_body_is_422_naming_the_field(service, body, field):
    response = post(service, body)
    assert response.status_code == 422
    assert field in [error["loc"] for error in response.json()["detail"]]


def test_invalid_json_is_422(service):
    response = httpx.post(
        f"{service.url}/prerank",
        content=b"{not json",
        timeout=10,
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 422


def test_too_many_candidates_is_a_clear_4xx(service):
    response = post(service, {"user_id": 1, "candidates": list(range(1, 502))})
    assert response.status_code == 422
    (error,) = response.json()["detail"]
    assert error["loc"] == ["body", "candidates"]
    assert "at most 500" in error["msg"]


def test_top_k(service, tiny_data):
    candidates = tiny_data.catalogue[:50].tolist()
    full = post(service, {"user_id": 2, "candidates": candidates}).json()["items"]
    top3 = post(service, {"user_id": 2, "candidates": candidates, "top_k": 3}).json()["items"]
    assert top3 == full[:3]
    larger = post(service, {"user_id": 2, "candidates": candidates, "top_k": 500}).json()["items"]
    assert larger == full


def test_user_unknown_to_the_feature_store_is_cold_start(service, tiny_data):
    stranger = tiny_data.num_users + 1000
    body = post(service, {"user_id": stranger, "candidates": tiny_data.catalogue[:10].tolist()})
    body = body.json()
    assert body["cold_start"] is True and body["user_source"] == "cold_start"
    assert len(body["items"]) == 10


def test_request_features_override_and_change_scores(service, tiny_data):
    stranger = tiny_data.num_users + 1000
    candidates = tiny_data.catalogue[:30].tolist()
    history = tiny_data.latest_histories[known_user(tiny_data)]
    cold = post(service, {"user_id": stranger, "candidates": candidates}).json()
    given = post(
        service,
        {"user_id": stranger, "candidates": candidates, "history": [int(i) for i in history if i]},
    ).json()
    assert given["user_source"] == "request" and given["cold_start"] is False
    assert {i["item_id"]: i["score"] for i in cold["items"]} != {
        i["item_id"]: i["score"] for i in given["items"]
    }


def test_service_scores_equal_pytorch_eval_scores(service, trained_fit, tiny_data):
    """>= 500 (user, item) pairs: HTTP scores == sigmoid(eval-mode forward) within 1e-4."""
    items = tiny_data.catalogue
    users = [int(u) for u in np.unique(tiny_data.user_ids)[:3]]
    pairs = 0
    for user in users:
        body = post(service, {"user_id": user, "candidates": items.tolist()}).json()
        served = {i["item_id"]: i["score"] for i in body["items"]}
        expected = eval_scores(trained_fit, tiny_data, user, items)
        got = np.array([served[int(i)] for i in items])
        assert np.abs(got - expected).max() <= 1e-4
        pairs += items.size
    assert pairs >= 500


def test_metrics_show_the_request_in_every_stage(service, tiny_data):
    def count(text: str, stage: str) -> float:
        pattern = rf'prerank_stage_seconds_count{{arm="control",stage="{stage}"}} (\S+)'
        match = re.search(pattern, text)
        return float(match.group(1)) if match else 0.0

    before = httpx.get(f"{service.url}/metrics").text
    post(service, {"user_id": 3, "candidates": tiny_data.catalogue[:100].tolist()})
    after = httpx.get(f"{service.url}/metrics").text
    for stage in STAGES:
        assert count(after, stage) == count(before, stage) + 1, stage
    assert 'prerank_candidates_bucket{arm="control",le="100.0"}' in after
    assert 'arm="control"' in after.split("prerank_active_version{", 1)[1].split("\n")[0]


def test_health_and_readiness(service, published_fit):
    assert httpx.get(f"{service.url}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{service.url}/readyz").json()
    assert ready["ready"] is True
    assert ready["version"] == published_fit.manifest.version


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_body_over_the_byte_limit_is_413_before_parsing(service, tiny_data, chunked) -> None:
    body = orjson.dumps({"user_id": 1, "candidates": list(range(300_000))})  # ~2 MB > 1 MiB
    content = iter([body[i : i + 65536] for i in range(0, len(body), 65536)]) if chunked else body
    response = httpx.post(
        f"{service.url}/prerank",
        content=content,
        headers={"content-type": "application/json"},
        timeout=30,
    )
    assert response.status_code == 413
    (error,) = response.json()["detail"]
    assert error["loc"] == ["body"] and "PRERANK_MAX_BODY_BYTES" in error["msg"]
    ok = post(service, {"user_id": 1, "candidates": tiny_data.catalogue[:3].tolist()})
    assert ok.status_code == 200
