"""The routes' threading: dependencies run on the event loop, and a request's CPU work runs in
the request thread pool, or on the loop itself with PRERANK_REQUEST_THREADS=0, answering the
same."""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import Iterator

import httpx
import msgpack
import pytest

from prerank_contract.http import MSGPACK_TYPE
from research.service_process import ServiceProcess
from service.auth import require_api_key
from service.routes import get_state, run_request_work
from tests.conftest import start_service, wait_for


@pytest.mark.parametrize("dependency", [get_state, require_api_key])
def test_dependencies_are_coroutines(dependency: object) -> None:
    # FastAPI runs a plain-function dependency in the thread pool: one more thread hop per
    # request (0.25 ms of a 1.6-1.8 ms answer at 100 candidates, measured).
    assert inspect.iscoroutinefunction(dependency)


@pytest.mark.parametrize("threads", [0, 1, 2])
def test_request_work_leaves_the_loop_only_with_threads(threads: int) -> None:
    async def threads_of_loop_and_work() -> tuple[int, int]:
        return threading.get_ident(), await run_request_work(threads, threading.get_ident)

    loop_thread, work_thread = asyncio.run(threads_of_loop_and_work())
    assert (work_thread == loop_thread) == (threads == 0)


@pytest.fixture(scope="module")
def on_the_loop(published_fit, key_prefix: str, tmp_path_factory) -> Iterator[ServiceProcess]:
    running = start_service(
        {
            "PRERANK_REDIS_KEY_PREFIX": key_prefix,
            "PRERANK_MAX_CANDIDATES": "500",
            "PRERANK_REQUEST_THREADS": "0",
        },
        tmp_path_factory.mktemp("on-the-loop") / "service.log",
    )
    wait_for(lambda: httpx.get(f"{running.url}/readyz").status_code == 200, "ready")
    yield running
    running.stop()


def test_without_request_threads_the_answers_are_the_same(
    service: ServiceProcess, on_the_loop: ServiceProcess, tiny_data
) -> None:
    wait_for(lambda: httpx.get(f"{service.url}/readyz").status_code == 200, "ready")
    body = {
        "user_id": 3,
        "candidates": [*tiny_data.catalogue[:50].tolist(), 10**9, int(tiny_data.catalogue[0])],
        "history": tiny_data.catalogue[50:60].tolist(),
        "top_k": 20,
        "explain": True,
    }
    packed = {"content-type": MSGPACK_TYPE, "accept": MSGPACK_TYPE}
    for url in (service.url, on_the_loop.url):
        json_answer = httpx.post(f"{url}/prerank", json=body, timeout=30)
        msgpack_answer = httpx.post(
            f"{url}/prerank", content=msgpack.packb(body), headers=packed, timeout=30
        )
        assert json_answer.status_code == msgpack_answer.status_code == 200
        if url == service.url:
            expected = json_answer.json(), msgpack.unpackb(msgpack_answer.content)
        else:
            assert (json_answer.json(), msgpack.unpackb(msgpack_answer.content)) == expected
    bad = httpx.post(f"{on_the_loop.url}/prerank", json={**body, "candidates": "x"}, timeout=30)
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["body", "candidates"]
