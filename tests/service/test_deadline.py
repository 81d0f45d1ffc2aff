"""Per-request deadlines over HTTP: past the deadline the answer is the snapshot's precomputed
cold-start order, flagged degraded; a bad deadline header is a 422 naming it."""

from __future__ import annotations

import re

import httpx
import pytest

from prerank_contract.http import DEADLINE_HEADER

UNKNOWN_USER = 10**12  # outside the vocabulary and absent from the feature store: cold start


def post(service, body: object, deadline: str | None = None) -> httpx.Response:
    headers = {} if deadline is None else {DEADLINE_HEADER: deadline}
    return httpx.post(f"{service.url}/prerank", json=body, headers=headers, timeout=30)


def degraded_count(service) -> float:
    text = httpx.get(f"{service.url}/metrics").text
    match = re.search(
        r'prerank_degraded_answers_total\{arm="control",reason="deadline"} (\S+)', text
    )
    return float(match.group(1)) if match else 0.0


def test_past_the_deadline_the_answer_is_the_cold_start_order(service, tiny_data) -> None:
    candidates = tiny_data.catalogue[:120].tolist()
    user = int(tiny_data.user_ids[0])
    before = degraded_count(service)
    late = post(service, {"user_id": user, "candidates": candidates}, deadline="0.000001")
    assert late.status_code == 200
    late_body = late.json()
    assert late_body["degraded"] is True and late_body["degraded_reasons"] == ["deadline"]
    assert late_body["user_source"] == "cold_start"
    assert degraded_count(service) == before + 1
    # the full model for a user nothing is known about gives the same order and scores
    cold = post(service, {"user_id": UNKNOWN_USER, "candidates": candidates}).json()
    assert cold["degraded"] is False and cold["cold_start"] is True
    assert [i["item_id"] for i in late_body["items"]] == [i["item_id"] for i in cold["items"]]
    assert [i["score"] for i in late_body["items"]] == pytest.approx(
        [i["score"] for i in cold["items"]], abs=1e-5
    )
    # and it is not the personalised order this user gets in time
    personal = post(service, {"user_id": user, "candidates": candidates}, deadline="10000").json()
    assert personal["degraded"] is False and personal["user_source"] == "feature_store"
    assert [i["score"] for i in personal["items"]] != [i["score"] for i in late_body["items"]]


def test_unknown_and_duplicate_candidates_are_still_reported_past_the_deadline(
    service, tiny_data
) -> None:
    known = tiny_data.catalogue[:3].tolist()
    body = {"user_id": 1, "candidates": [*known, 10**15, known[0]], "top_k": 2}
    late = post(service, body, deadline="0.000001").json()
    assert late["degraded_reasons"] == ["deadline"]
    assert len(late["items"]) == 2 and late["unknown_items"] == [10**15]
    assert late["duplicate_items"] == [known[0]]


@pytest.mark.parametrize("value", ["abc", "0", "-5", "nan", "inf", ""])
def test_a_bad_deadline_header_is_a_422_naming_it(service, value: str) -> None:
    response = post(service, {"user_id": 1, "candidates": [1]}, deadline=value)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["header", DEADLINE_HEADER]
