"""The echo floor answers in the service's shape: the same keys, items, unknown and duplicate
ids, top_k and validation errors as the real service, with a hash for a score."""

from __future__ import annotations

import httpx
import msgpack
import numpy as np
import orjson

from prerank_contract.http import COLUMNAR_JSON_TYPE, ITEM_IDS, MSGPACK_TYPE
from research.bench.echo import ECHO_VERSION
from research.bench.targets import ECHO, FIT
from research.service_process import ServiceProcess

UNKNOWN_ID = 99_999_999


def post(service: ServiceProcess, body: dict[str, object]) -> tuple[int, dict[str, object]]:
    response = httpx.post(f"{service.url}/prerank", content=orjson.dumps(body), timeout=30)
    return response.status_code, response.json()


def test_echo_answers_in_the_service_shape(
    servers: dict[str, ServiceProcess], catalogue: np.ndarray
) -> None:
    known = catalogue[:40].tolist()
    body = {
        "user_id": 7,
        "history": catalogue[50:60].tolist(),
        "candidates": [*known, UNKNOWN_ID, known[3]],
    }
    (echo_status, echo), (fit_status, fit) = (post(servers[t], body) for t in (ECHO, FIT))
    assert echo_status == fit_status == 200
    assert echo.keys() == fit.keys()
    assert echo["model_version"] == ECHO_VERSION != fit["model_version"]
    for answer in (echo, fit):
        items = answer["items"]
        assert isinstance(items, list)
        assert sorted(item["item_id"] for item in items) == sorted(known)
        assert all(item.keys() == {"item_id", "score"} for item in items)
        scores = [item["score"] for item in items]
        assert scores == sorted(scores, reverse=True)  # best first
    for same in ("arm", "unknown_items", "duplicate_items", "user_source", "cold_start"):
        assert echo[same] == fit[same], same
    assert echo["unknown_items"] == [UNKNOWN_ID] and echo["duplicate_items"] == [known[3]]

    top = {**body, "top_k": 5}
    assert len(post(servers[ECHO], top)[1]["items"]) == len(post(servers[FIT], top)[1]["items"])
    bad = {"user_id": 7, "candidates": [known[0], "x"]}
    assert post(servers[ECHO], bad) == post(servers[FIT], bad)  # the same parser: the same 422


def test_echo_speaks_every_wire_format_as_the_service_does(
    servers: dict[str, ServiceProcess], catalogue: np.ndarray
) -> None:
    """A MessagePack body answered in MessagePack and in columnar JSON: the service's columnar
    fields and types, from the echo floor as from FIT."""
    body = msgpack.packb({"user_id": 7, "candidates": [*catalogue[:20].tolist(), UNKNOWN_ID]})
    for accept, decode in ((MSGPACK_TYPE, msgpack.unpackb), (COLUMNAR_JSON_TYPE, orjson.loads)):
        headers = {"content-type": MSGPACK_TYPE, "accept": accept}
        echo, fit = (
            httpx.post(f"{servers[t].url}/prerank", content=body, headers=headers, timeout=30)
            for t in (ECHO, FIT)
        )
        assert echo.headers["content-type"] == fit.headers["content-type"] == accept
        echo_answer, fit_answer = decode(echo.content), decode(fit.content)
        assert echo_answer.keys() == fit_answer.keys()
        assert sorted(echo_answer[ITEM_IDS]) == sorted(fit_answer[ITEM_IDS])
        assert echo_answer["unknown_items"] == fit_answer["unknown_items"] == [UNKNOWN_ID]
