"""The caller's ids in, the caller's ids out: a model trained from a team's own files (string user
and item ids, raw profile values), published to the real Redis with its feature store and served
by a real uvicorn, answers in the ids it was sent, with the PyTorch model's scores."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import msgpack
import numpy as np
import pytest
import redis

from offline_jobs.data.dataset import InteractionData
from offline_jobs.data.example import ExampleFiles, write_example
from offline_jobs.data.records import user_records
from offline_jobs.data.spec import load_spec
from offline_jobs.data.spec_data import load_spec_data
from offline_jobs.settings import JobSettings
from prerank_contract.http import COLUMNAR_JSON_TYPE, MSGPACK_TYPE
from prerank_contract.keys import RedisKeys
from prerank_model.models.base import PrerankModel
from research.service_process import ServiceProcess
from tests.conftest import eval_scores, make_bundle, publish_test_bundle, start_service, train_tiny

SCORE_TOLERANCE = 1e-4
USERS_ASKED = 4  # x every item of the tiny catalogue (300): well over the 500 pairs asked for


@dataclass(frozen=True)
class ServedShop:
    files: ExampleFiles
    data: InteractionData
    model: PrerankModel
    service: ServiceProcess

    def prerank(self, body: dict[str, object]) -> httpx.Response:
        return httpx.post(f"{self.service.url}/prerank", json=body, timeout=30)


@pytest.fixture(scope="module", params=["parquet", "csv"])
def served(
    request: pytest.FixtureRequest,
    tiny_data: InteractionData,
    job_settings: JobSettings,
    redis_client: redis.Redis,
    key_prefix: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ServedShop]:
    """The tiny world written as a shop's files in one table format, trained, bundled, published
    (with its feature store) under a prefix of its own, and served."""
    folder = tmp_path_factory.mktemp(f"shop-{request.param}")
    files = write_example(tiny_data, folder, request.param)
    data = load_spec_data(load_spec(files.spec))
    model = train_tiny("fit", data, job_settings)
    bundle = make_bundle(model, data, job_settings)
    keys = RedisKeys(f"{key_prefix}raw-{request.param}:")
    publish_test_bundle(redis_client, keys, bundle.path, users=data)
    service = start_service(
        {"PRERANK_REDIS_KEY_PREFIX": keys.prefix, "PRERANK_MAX_CANDIDATES": "1000"},
        tmp_path_factory.mktemp("service") / "service.log",
    )
    yield ServedShop(files, data, model, service)
    service.stop()


def test_string_ids_come_back_as_sent_with_the_pytorch_scores(served: ServedShop) -> None:
    pairs = 0
    for user in range(1, USERS_ASKED + 1):
        raw_user = served.files.users[user - 1]
        answer = served.prerank({"user_id": raw_user, "candidates": served.files.items})
        assert answer.status_code == 200, answer.text
        payload = answer.json()
        assert payload["user_source"] == "feature_store"
        sent = {item["item_id"] for item in payload["items"]}
        assert sent == set(served.files.items)  # every id as sent, none left out
        internal = np.array([served.files.items.index(i["item_id"]) + 1 for i in payload["items"]])
        expected = eval_scores(served.model, served.data, user, internal)
        scores = np.array([item["score"] for item in payload["items"]])
        np.testing.assert_allclose(scores, expected, atol=SCORE_TOLERANCE)
        pairs += scores.size
    assert pairs >= 500


def test_raw_profile_and_history_score_as_the_stored_record(served: ServedShop) -> None:
    """The feature store holds raw values; a request that sends the same raw values itself is
    encoded the same way, and so is scored the same."""
    user = 7
    raw_user, record = list(user_records(served.data))[user - 1]
    assert raw_user == served.files.users[user - 1]
    assert record["history"] and all(str(i).startswith("B") for i in record["history"])
    candidates = served.files.items[:50]
    stored = served.prerank({"user_id": raw_user, "candidates": candidates}).json()
    given = served.prerank(
        {
            "user_id": "u-new",  # unknown to the store: only the request's values count
            "user_features": {**record["features"], "user_id": raw_user},
            "history": record["history"],
            "candidates": candidates,
        }
    ).json()
    assert (stored["user_source"], given["user_source"]) == ("feature_store", "request")
    assert stored["items"] == given["items"]


def test_unknown_and_repeated_ids_are_reported_as_sent(served: ServedShop) -> None:
    known = served.files.items[:3]
    candidates = [known[0], "not-an-item", known[1], known[0], "not-an-item", known[2]]
    payload = served.prerank({"user_id": served.files.users[0], "candidates": candidates}).json()
    assert [item["item_id"] for item in payload["items"]] != []
    assert {item["item_id"] for item in payload["items"]} == set(known)
    assert payload["unknown_items"] == ["not-an-item"]
    assert payload["duplicate_items"] == sorted([known[0], "not-an-item"])


def test_ids_of_the_other_kind_are_a_422_naming_the_field(served: ServedShop) -> None:
    user, items = served.files.users[0], served.files.items[:2]
    for body, field in (
        ({"user_id": user, "candidates": [1, 2]}, ["body", "candidates"]),
        ({"user_id": user, "candidates": items, "history": [3]}, ["body", "history"]),
        ({"user_id": 42, "candidates": items}, ["body", "user_id"]),
    ):
        answer = served.prerank(body)
        assert answer.status_code == 422, answer.text
        (error,) = answer.json()["detail"]
        assert error["loc"] == field
        assert "integer id" in error["msg"] and "the serving version's" in error["msg"]


def test_a_raw_profile_value_of_the_wrong_type_is_a_422_naming_it(served: ServedShop) -> None:
    user, items = served.files.users[0], served.files.items[:2]
    for features, loc in (
        ({"age": "old"}, ["body", "user_features", "age"]),
        ({"gender": 3}, ["body", "user_features", "gender"]),
        ({"region": ["r1", "r2"]}, ["body", "user_features", "region"]),
    ):
        answer = served.prerank({"user_id": user, "candidates": items, "user_features": features})
        assert answer.status_code == 422, answer.text
        (error,) = answer.json()["detail"]
        assert error["loc"] == loc


def test_clusters_show_the_callers_ids(served: ServedShop) -> None:
    clusters = httpx.get(f"{served.service.url}/clusters", timeout=30).json()["clusters"]
    examples = [example for cluster in clusters for example in cluster["examples"]]
    assert examples and set(examples) <= set(served.files.items)


def test_string_ids_travel_in_messagepack_and_columnar_json(served: ServedShop) -> None:
    """The binary and columnar answers carry the JSON answer's string ids, order and scores."""
    body = {"user_id": served.files.users[1], "candidates": [*served.files.items[:40], "nope"]}
    plain = served.prerank(body).json()
    url = f"{served.service.url}/prerank"
    packed = httpx.post(
        url,
        content=msgpack.packb(body),
        headers={"content-type": MSGPACK_TYPE, "accept": MSGPACK_TYPE},
        timeout=30,
    )
    columnar = httpx.post(url, json=body, headers={"accept": COLUMNAR_JSON_TYPE}, timeout=30)
    for answer in (msgpack.unpackb(packed.content), columnar.json()):
        assert answer["item_ids"] == [item["item_id"] for item in plain["items"]]
        assert answer["scores"] == [item["score"] for item in plain["items"]]
        assert answer["unknown_items"] == ["nope"]
