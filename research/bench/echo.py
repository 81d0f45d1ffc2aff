"""``python -m research.bench.echo``: the benchmark's floor. The service's stack and request path
around the model (FastAPI + uvicorn, the route's bounded raw-body read, `parse_request` where the
service runs a request's work (`service.routes.run_request_work`), de-duplication, catalogue
lookup, ordering, the answer's encoder; every wire format the service speaks, negotiated as it
does) with an id hash for a score instead of the model. Configured by the service's own PRERANK_*
settings (host, port, limits, threads, workers: with PRERANK_WORKERS > 1, forked worker
processes on one listening socket, as the service runs them); with PRERANK_BUNDLE_DIR, ids
outside that bundle's catalogue are reported unknown, as the service reports them."""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import socket
import sys
import threading
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from types import FrameType

import numpy as np
import uvicorn
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from prerank_contract.http import (
    ANSWER_TYPES,
    AnswerFormat,
    BodyFormat,
    UserSource,
    encode_answer,
)
from prerank_contract.manifest import ITEM_IDS_FILE
from prerank_contract.settings import configure_logging, load_settings
from prerank_contract.traffic import CONTROL
from service.ranking import best_first, deduplicate, invalid, parse_request
from service.routes import (
    answer_format,
    body_format,
    read_body,
    run_request_work,
)
from service.settings import ServiceSettings
from service.snapshot import search_sorted
from service.tuning import tune_process
from service.workers import STOP_MARGIN_SECONDS, WATCH_SECONDS, bind, uvicorn_config

log = logging.getLogger("research.bench.echo")

ECHO_VERSION = "echo"
HASH_MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing: ids spread over [0, 2^64)
HASH_SCALE = 2.0**-64


def echo_scores(item_ids: np.ndarray) -> np.ndarray:
    """[N] int64 ids -> [N] float64 pseudo-scores in [0, 1): a hash of the id, no model."""
    return (item_ids.astype(np.uint64) * HASH_MULTIPLIER).astype(np.float64) * HASH_SCALE


def integer_ids(ids: Sequence[int | str]) -> np.ndarray:
    """The candidates as [n] int64; ids written as strings are a 422 naming the field, as the
    service answers them for a version whose item ids are integers (the floor's catalogue is the
    bundle's integer item ids)."""
    if any(isinstance(item_id, str) for item_id in ids[:1]):
        raise invalid(("candidates",), "string ids, but the catalogue's item ids are integers")
    return np.asarray(ids, dtype=np.int64)


def echo_answer(
    body: bytes,
    catalogue: np.ndarray | None,
    max_candidates: int,
    max_history: int,
    wire: tuple[BodyFormat, AnswerFormat] = ("json", "json"),
) -> bytes:
    """Answer one /prerank body in the service's response shape (`service.ranking.rank`'s steps,
    with `echo_scores` where the model runs). `catalogue`: sorted [M] int64 known ids, or None
    (every id known). `wire`: the body's and the answer's formats, negotiated as the service
    does."""
    request = parse_request(body, max_candidates, max_history, wire[0])
    candidate_ids, duplicates = deduplicate(integer_ids(request.candidates))
    if catalogue is None:
        known = np.full(candidate_ids.size, True)
    else:
        _, known = search_sorted(catalogue, candidate_ids)
    known_ids, unknown_ids = candidate_ids[known], candidate_ids[~known]
    scores = echo_scores(known_ids)
    best = best_first(scores, request.top_k)
    given = request.user_features is not None or request.history is not None
    source: UserSource = "request" if given else "cold_start"
    return encode_answer(
        model_version=ECHO_VERSION,
        arm=CONTROL,
        item_ids=known_ids[best],
        scores=scores[best],
        meta_index=np.zeros(best.size, dtype=np.int64) if request.explain else None,
        unknown_ids=unknown_ids,
        duplicate_ids=duplicates,
        user_source=source,
        degraded_reasons=[],
        answer_format=wire[1],
    )


def load_catalogue(settings: ServiceSettings) -> np.ndarray | None:
    """The sorted item ids of PRERANK_BUNDLE_DIR's bundle, or None when it is unset."""
    if settings.bundle_dir is None:
        return None
    return np.load(settings.bundle_dir / ITEM_IDS_FILE, allow_pickle=False).astype(np.int64)


def create_echo_app(settings: ServiceSettings, catalogue: np.ndarray | None) -> FastAPI:
    """`POST /prerank` (echo), `/healthz`, `/readyz` (always ready, version "echo")."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        tune_process(settings)
        yield

    app = FastAPI(title="prerank echo floor", lifespan=lifespan)

    @app.post("/prerank")
    async def prerank(request: Request) -> Response:
        answer_as = answer_format(request.headers.get("accept"))
        if answer_as is None:
            return JSONResponse({"detail": "no acceptable format"}, status_code=406)
        body = await read_body(request, settings.max_body_bytes)
        if body is None:
            limit = settings.max_body_bytes
            detail = [{"type": "too_large", "loc": ["body"], "msg": f"body over {limit} bytes"}]
            return JSONResponse({"detail": detail}, status_code=413)
        payload = await run_request_work(
            settings.request_threads,
            echo_answer,
            body,
            catalogue,
            settings.max_candidates,
            settings.max_request_history,
            (body_format(request), answer_as),
        )
        return Response(payload, media_type=ANSWER_TYPES[answer_as])

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> dict[str, object]:
        items = None if catalogue is None else int(catalogue.size)
        return {"ready": True, "version": ECHO_VERSION, "items": items}

    return app


def serve_echo(
    settings: ServiceSettings,
    catalogue: np.ndarray | None,
    sockets: list[socket.socket] | None = None,
) -> None:
    """One echo server process (on `sockets`, else bound to host:port)."""
    app = create_echo_app(settings, catalogue)
    uvicorn.Server(uvicorn_config(app, settings)).run(sockets=sockets)


def serve_workers(settings: ServiceSettings, catalogue: np.ndarray | None) -> None:
    """`settings.workers` forked echo servers accepting on one socket (the service's layout:
    a parent and its workers); SIGTERM or SIGINT is passed on to each, which the parent waits
    for (SIGKILL past the shutdown timeout)."""
    listening = bind(settings)
    context = multiprocessing.get_context("fork")
    workers = [
        context.Process(target=serve_echo, args=(settings, catalogue, [listening]))
        for _ in range(settings.workers)
    ]
    for worker in workers:
        worker.start()
    stopping = threading.Event()
    received: list[int] = []

    def on_signal(sig: int, frame: FrameType | None) -> None:
        received.append(sig)
        stopping.set()

    for sig in (signal.SIGTERM, signal.SIGINT):  # after the fork: the workers keep uvicorn's
        signal.signal(sig, on_signal)
    while not stopping.wait(WATCH_SECONDS):
        pass
    for worker in workers:
        if worker.is_alive() and worker.pid is not None:
            os.kill(worker.pid, received[0])
    for worker in workers:
        worker.join(settings.shutdown_timeout_seconds + STOP_MARGIN_SECONDS)
        if worker.is_alive():
            worker.kill()
            worker.join()
    listening.close()


def main() -> int:
    settings = load_settings(ServiceSettings)
    configure_logging(settings.log_level.upper())
    catalogue = load_catalogue(settings)
    if settings.workers > 1:
        serve_workers(settings, catalogue)
    else:
        serve_echo(settings, catalogue)
    return 0


if __name__ == "__main__":
    sys.exit(main())
