"""/prerank's wire formats against a real uvicorn serving the published tiny FIT: the MessagePack
and columnar JSON answers carry exactly the JSON answer, a MessagePack request is answered as the
same JSON request, and a bad MessagePack body gets the same 4xx as its JSON equivalent."""

from __future__ import annotations

from collections import Counter
from typing import Any

import httpx
import msgpack
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from offline_jobs.data.dataset import InteractionData
from prerank_contract.http import (
    COLUMNAR_JSON_TYPE,
    ITEM_IDS,
    JSON_TYPE,
    META_INDEX,
    MSGPACK_TYPE,
    MSGPACK_TYPES,
    SCORES,
)
from research.service_process import ServiceProcess
from service.settings import ServiceSettings

UNKNOWN_IDS = [10_000_000, 10_000_001]
MAX_CANDIDATES = 500  # the `service` fixture's PRERANK_MAX_CANDIDATES
# The fixture keeps PRERANK_MAX_BODY_BYTES's default.
MAX_BODY_BYTES: int = ServiceSettings.model_fields["max_body_bytes"].default


def request_bodies(tiny_data: InteractionData) -> list[dict[str, Any]]:
    """Requests that exercise every part of the answer: unknown ids, duplicates, top_k, explain,
    request-given features and a cold-start user."""
    catalogue = tiny_data.catalogue.tolist()
    user = int(tiny_data.user_ids[0])
    stranger = tiny_data.num_users + 1000
    history = [int(i) for i in tiny_data.latest_histories[user] if i]
    return [
        {"user_id": user, "candidates": catalogue[:200]},
        {"user_id": user, "candidates": [*catalogue[:20], UNKNOWN_IDS[0], catalogue[3]]},
        {"user_id": user, "candidates": [*catalogue[:60], *UNKNOWN_IDS], "top_k": 7},
        {"user_id": user, "candidates": catalogue[:40], "explain": True},
        {"user_id": stranger, "candidates": catalogue[:30], "history": history, "top_k": 100},
        {"user_id": stranger, "candidates": [*catalogue[:10], catalogue[0]], "explain": True},
        {"user_id": user, "candidates": []},
    ]


def post(
    service: ServiceProcess, content: bytes, content_type: str, accept: str | None = None
) -> httpx.Response:
    headers = {"content-type": content_type}
    if accept is not None:
        headers["accept"] = accept
    return httpx.post(f"{service.url}/prerank", content=content, headers=headers, timeout=30)


def as_columns(answer: dict[str, Any], explain: bool) -> dict[str, Any]:
    """A JSON answer with its items as the columnar answer's parallel arrays."""
    columnar = {key: value for key, value in answer.items() if key != "items"}
    columnar[ITEM_IDS] = [item["item_id"] for item in answer["items"]]
    columnar[SCORES] = [item["score"] for item in answer["items"]]
    if explain:
        columnar[META_INDEX] = [item["meta_index"] for item in answer["items"]]
    return columnar


@pytest.fixture(scope="module")
def json_answers(service: ServiceProcess, tiny_data: InteractionData) -> list[dict[str, Any]]:
    answers = []
    for body in request_bodies(tiny_data):
        response = post(service, orjson.dumps(body), JSON_TYPE)
        assert response.status_code == 200, response.text
        answers.append(response.json())
    return answers


def test_the_requests_cover_every_part_of_the_answer(json_answers):
    """The comparisons below are not vacuous: the answers hold items, unknown ids, duplicates,
    meta indices and more than one user source."""
    assert any(answer["items"] for answer in json_answers)
    assert any(answer["unknown_items"] for answer in json_answers)
    assert any(answer["duplicate_items"] for answer in json_answers)
    assert any("meta_index" in item for answer in json_answers for item in answer["items"])
    assert len({answer["user_source"] for answer in json_answers}) > 1


@pytest.mark.parametrize(
    ("accept", "content_type", "decode"),
    [
        (MSGPACK_TYPE, MSGPACK_TYPE, msgpack.unpackb),
        (MSGPACK_TYPES[1], MSGPACK_TYPE, msgpack.unpackb),
        (COLUMNAR_JSON_TYPE, COLUMNAR_JSON_TYPE, orjson.loads),
    ],
)
def test_columnar_answers_carry_exactly_the_json_answer(
    service, tiny_data, json_answers, accept, content_type, decode
):
    """Same ids, order, scores (as the floats the JSON carries) and every other field."""
    for body, json_answer in zip(request_bodies(tiny_data), json_answers, strict=True):
        response = post(service, orjson.dumps(body), JSON_TYPE, accept)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == content_type
        columnar = decode(response.content)
        assert columnar == as_columns(json_answer, body.get("explain", False))
        assert all(type(score) is float for score in columnar[SCORES])


@pytest.mark.parametrize("content_type", MSGPACK_TYPES)
def test_a_msgpack_request_is_answered_as_the_same_json_request(
    service, tiny_data, json_answers, content_type
):
    for body, json_answer in zip(request_bodies(tiny_data), json_answers, strict=True):
        response = post(service, msgpack.packb(body), content_type)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == JSON_TYPE
        assert response.json() == json_answer


def test_msgpack_both_ways(service, tiny_data, json_answers):
    body, json_answer = request_bodies(tiny_data)[3], json_answers[3]
    response = post(service, msgpack.packb(body), MSGPACK_TYPE, MSGPACK_TYPE)
    assert msgpack.unpackb(response.content) == as_columns(json_answer, explain=True)


@pytest.mark.parametrize(
    "accept", [None, "*/*", "application/*", JSON_TYPE, "text/html, */*;q=0.1"]
)
def test_json_stays_the_default(service, tiny_data, json_answers, accept):
    response = post(service, orjson.dumps(request_bodies(tiny_data)[0]), JSON_TYPE, accept)
    assert response.headers["content-type"] == JSON_TYPE
    assert response.json() == json_answers[0]


def test_accept_quality_picks_the_format(service, tiny_data):
    accept = f"{JSON_TYPE};q=0.5, {MSGPACK_TYPE}, {COLUMNAR_JSON_TYPE};q=0.9"
    response = post(service, orjson.dumps(request_bodies(tiny_data)[0]), JSON_TYPE, accept)
    assert response.headers["content-type"] == MSGPACK_TYPE


@pytest.mark.parametrize("accept", ["text/html", "application/xml, text/*", f"{MSGPACK_TYPE};q=0"])
def test_an_accept_we_cannot_serve_is_406_naming_our_formats(service, accept):
    response = post(service, orjson.dumps({"user_id": 1, "candidates": [1]}), JSON_TYPE, accept)
    assert response.status_code == 406
    detail = response.json()["detail"]
    assert all(media_type in detail for media_type in (JSON_TYPE, MSGPACK_TYPE, COLUMNAR_JSON_TYPE))


def error_locs(response: httpx.Response) -> list[list[str | int]]:
    return [error["loc"] for error in response.json()["detail"]]


@pytest.mark.parametrize(
    "body",
    [
        [1, 2, 3],
        {"user_id": 1, "candidates": [1, "two"]},
        {"user_id": "abc", "candidates": [1]},
        {"user_id": 1},
        {"user_id": 1, "candidates": [1], "top_k": 0},
        {"user_id": 1, "candidates": [1], "surprise": True},
        {"user_id": 1, "candidates": [1], "user_features": {"nope": 1}},
        {"user_id": 1, "candidates": [1, 2**63]},
        {"user_id": 1, "candidates": list(range(1, MAX_CANDIDATES + 2))},
        {"user_id": 1, "candidates": [1], "history": [1.5]},
    ],
)
def test_a_bad_msgpack_body_gets_the_json_equivalents_4xx(service, body):
    from_json = post(service, orjson.dumps(body), JSON_TYPE)
    from_msgpack = post(service, msgpack.packb(body), MSGPACK_TYPE)
    assert from_json.status_code == 422
    assert from_msgpack.status_code == from_json.status_code
    assert error_locs(from_msgpack) == error_locs(from_json)


@pytest.mark.parametrize(
    "content",
    [
        b"\xc1",  # a type byte MessagePack never uses
        b"\x92\x01",  # an array cut short
        msgpack.packb({"user_id": 1, "candidates": [1]}) + b"\x01",  # trailing bytes
        msgpack.packb({1: 2}),  # a map key that is not a string
        b"{not json",
    ],
)
def test_a_body_that_is_not_msgpack_is_422_at_body_as_invalid_json_is(service, content):
    invalid_json = post(service, b"{not json", JSON_TYPE)
    response = post(service, content, MSGPACK_TYPE)
    assert response.status_code == invalid_json.status_code == 422
    assert error_locs(response) == error_locs(invalid_json) == [["body"]]


def test_an_oversized_msgpack_body_is_413_as_json_is(service):
    body = {"user_id": 1, "candidates": list(range(2**40, 2**40 + MAX_BODY_BYTES // 8))}
    from_msgpack = post(service, msgpack.packb(body), MSGPACK_TYPE)
    from_json = post(service, orjson.dumps(body), JSON_TYPE)
    assert from_msgpack.status_code == from_json.status_code == 413
    assert error_locs(from_msgpack) == error_locs(from_json) == [["body"]]


def test_the_openapi_document_names_every_format(service):
    operation = httpx.get(f"{service.url}/openapi.json").json()["paths"]["/prerank"]["post"]
    assert {JSON_TYPE, MSGPACK_TYPE} <= set(operation["requestBody"]["content"])
    answers = operation["responses"]["200"]["content"]
    assert {JSON_TYPE, MSGPACK_TYPE, COLUMNAR_JSON_TYPE} <= set(answers)
    assert {ITEM_IDS, SCORES} <= set(answers[MSGPACK_TYPE]["schema"]["required"])
    assert "406" in operation["responses"]


def counts(service: ServiceProcess) -> Counter[tuple[str, str]]:
    """(sample name, stage or status) -> value, summed over arms, of the request counter and the
    stage histogram's counts."""
    text = httpx.get(f"{service.url}/metrics", timeout=10).text
    totals: Counter[tuple[str, str]] = Counter()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "prerank_requests_total":
                totals[(sample.name, sample.labels["status"])] += sample.value
            elif sample.name == "prerank_stage_seconds_count":
                totals[(sample.name, sample.labels["stage"])] += sample.value
    return totals


def test_a_msgpack_request_is_counted_and_timed_as_a_json_one(service, tiny_data):
    body = msgpack.packb(request_bodies(tiny_data)[0])
    before = counts(service)
    assert post(service, body, MSGPACK_TYPE, MSGPACK_TYPE).status_code == 200
    assert post(service, b"\xc1", MSGPACK_TYPE).status_code == 422
    assert post(service, body, MSGPACK_TYPE, "text/html").status_code == 406
    moved = counts(service)
    moved.subtract(before)
    for stage in ("parse", "scorer", "serialize"):
        assert moved[("prerank_stage_seconds_count", stage)] == 1, stage
    for status in ("200", "422", "406"):
        assert moved[("prerank_requests_total", status)] == 1, status
