"""HTTP routes: the API (/prerank, /clusters, /metrics), behind the API keys when they are
configured (`service.auth`), and the probes (/healthz, /readyz), always open."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.concurrency import run_in_threadpool

from prerank_contract.http import (
    ANSWER_TYPES,
    COLUMNAR_JSON_TYPE,
    DEADLINE_HEADER,
    JSON_TYPE,
    MSGPACK_TYPE,
    MSGPACK_TYPES,
    WORKER_HEADER,
    AnswerFormat,
    BodyFormat,
)
from prerank_contract.traffic import CONTROL, Arm
from service.auth import may_see_detail
from service.metrics import NO_ARM
from service.ranking import rank
from service.schemas import (
    Cluster,
    ClustersResponse,
    ColumnarPrerankResponse,
    PrerankRequest,
    PrerankResponse,
    ValidationErrors,
)
from service.settings import ServiceSettings
from service.state import ServiceState, Serving

Answered = TypeVar("Answered")

api_router = APIRouter()  # create_app mounts it behind the API keys when they are configured
probe_router = APIRouter()


async def get_state(request: Request) -> ServiceState:
    """The app's state. A coroutine so that FastAPI calls it on the event loop: a plain function
    dependency runs in the thread pool, a thread hop per request."""
    state: ServiceState = request.app.state.prerank
    return state


State = Annotated[ServiceState, Depends(get_state)]

# The body and the deadline header are read by the route itself (size-bounded body, one parser
# for the header), so their schema is declared here for the OpenAPI document.
_PRERANK_OPENAPI = {
    "requestBody": {
        "required": True,
        "description": f"JSON by default; `Content-Type: {MSGPACK_TYPE}` (or "
        f"`{MSGPACK_TYPES[1]}`) sends the same fields as a MessagePack map, validated by the "
        "same rules (the same 413 and 422s, and a body that is not MessagePack is a 422 at "
        '`["body"]`, as invalid JSON is)',
        "content": {
            media_type: {"schema": PrerankRequest.model_json_schema()}
            for media_type in (JSON_TYPE, MSGPACK_TYPE)
        },
    },
    "parameters": [
        {
            "name": DEADLINE_HEADER,
            "in": "header",
            "required": False,
            "schema": {"type": "number", "exclusiveMinimum": 0},
            "description": "answer within this many milliseconds of arrival: past it, before the "
            "model runs, the answer is the cheap fallback order flagged degraded (default: "
            "PRERANK_DEADLINE_MS)",
        }
    ],
}


def request_deadline(request: Request, settings: ServiceSettings, arrived: float) -> float:
    """The perf_counter time by which the answer is due: the deadline header (milliseconds after
    arrival) or PRERANK_DEADLINE_MS. A header that is not a positive number is a 422 naming it."""
    header = DEADLINE_HEADER
    raw = request.headers.get(header)
    if raw is None:
        return arrived + settings.deadline_ms / 1000
    try:
        milliseconds = float(raw)
    except ValueError:
        milliseconds = math.nan
    if not (math.isfinite(milliseconds) and milliseconds > 0):
        raise RequestValidationError(
            [
                {
                    "type": "value_error",
                    "loc": ("header", header),
                    "msg": f"{raw!r}: a deadline is a positive number of milliseconds",
                }
            ]
        )
    return arrived + milliseconds / 1000


def body_format(request: Request) -> BodyFormat:
    """MessagePack when the Content-Type says so; anything else is parsed as JSON."""
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    return "msgpack" if media_type in MSGPACK_TYPES else "json"


# What each media range of an Accept header asks of /prerank; a wildcard gets the JSON answer.
_ACCEPTABLE: dict[str, AnswerFormat] = {
    "*/*": "json",
    "application/*": "json",
    JSON_TYPE: "json",
    COLUMNAR_JSON_TYPE: "columnar_json",
    **dict.fromkeys(MSGPACK_TYPES, "msgpack"),
}


def media_range_quality(params: list[str]) -> float:
    """The `q` of one Accept media range (1 when absent or unreadable: be lenient with callers)."""
    for param in params:
        name, _, value = param.partition("=")
        if name.strip().lower() == "q":
            try:
                return min(max(float(value), 0.0), 1.0)
            except ValueError:
                return 1.0
    return 1.0


def answer_format(accept: str | None) -> AnswerFormat | None:
    """The answer's format for an Accept header: the acceptable range of highest q (a named type
    before a wildcard); JSON when the header is absent; None when it names only what we cannot
    write."""
    if accept is None or not accept.strip():
        return "json"
    best: tuple[float, bool, AnswerFormat] | None = None
    for media_range in accept.split(","):
        media_type, *params = media_range.split(";")
        chosen = _ACCEPTABLE.get(media_type.strip().lower())
        quality = media_range_quality(params)
        if chosen is None or quality <= 0:
            continue
        rank_key = (quality, "*" not in media_type, chosen)
        if best is None or rank_key[:2] > best[:2]:
            best = rank_key
    return None if best is None else best[2]


async def run_request_work(threads: int, work: Callable[..., Answered], *args: Any) -> Answered:
    """A request's CPU work, `work(*args)`: in the request thread pool, or with `threads` = 0
    (PRERANK_REQUEST_THREADS) on the event loop itself. A hand-off to a thread costs two thread
    wake-ups (0.25 ms of a 2.1 ms answer at 1,000 candidates, measured)."""
    if threads == 0:
        return work(*args)
    return await run_in_threadpool(work, *args)


async def read_body(request: Request, limit: int) -> bytes | None:
    """The body, or None as soon as it exceeds `limit` bytes (declared or streamed)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        return None
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


@api_router.post(
    "/prerank",
    response_model=PrerankResponse,
    openapi_extra=_PRERANK_OPENAPI,
    responses={
        200: {
            "description": f"The answer. JSON by default (`{JSON_TYPE}`, `*/*` or no Accept): "
            f"items as objects. `Accept: {MSGPACK_TYPE}` (or `{MSGPACK_TYPES[1]}`) answers "
            f"MessagePack and `Accept: {COLUMNAR_JSON_TYPE}` JSON, both columnar: `item_ids` and "
            "`scores` (float 64, equal to the JSON answer's) as parallel arrays, plus "
            "`meta_index` with `explain`. Errors are always JSON.",
            "content": {
                media_type: {"schema": ColumnarPrerankResponse.model_json_schema()}
                for media_type in (MSGPACK_TYPE, COLUMNAR_JSON_TYPE)
            },
        },
        406: {
            "description": "the Accept header names only formats /prerank cannot answer in",
            "content": {JSON_TYPE: {"schema": {"type": "object"}}},
        },
        413: {"model": ValidationErrors, "description": "body larger than PRERANK_MAX_BODY_BYTES"},
        422: {
            "model": ValidationErrors,
            "description": "a field of the body, or the deadline header, is invalid",
        },
        503: {"description": "no model loaded yet, or overloaded (then with Retry-After)"},
    },
)
async def prerank(request: Request, state: State) -> Response:
    """Score every candidate for the user, best first. CPU work runs off the event loop."""
    arrived = time.perf_counter()
    metrics = state.metrics
    serving = state.serving  # one read: the whole request uses one serving state
    if serving is None:
        metrics.requests.labels(status="503", arm=NO_ARM).inc()
        return JSONResponse({"detail": state.not_ready_reason}, status_code=503)
    settings = state.settings
    if state.in_flight >= settings.max_in_flight:  # shed load before reading the body
        metrics.requests.labels(status="503", arm=NO_ARM).inc()
        return JSONResponse(
            {"detail": f"overloaded: {state.in_flight} requests in flight (PRERANK_MAX_IN_FLIGHT)"},
            status_code=503,
            headers={"Retry-After": str(settings.retry_after_seconds)},
        )
    state.in_flight += 1  # only the event loop thread touches the counter
    metrics.in_flight.set(state.in_flight)
    try:
        return await answer_prerank(request, state, serving, arrived)
    finally:
        state.in_flight -= 1
        metrics.in_flight.set(state.in_flight)


async def answer_prerank(
    request: Request, state: ServiceState, serving: Serving, arrived: float
) -> Response:
    metrics = state.metrics
    try:
        deadline = request_deadline(request, state.settings, arrived)
    except RequestValidationError:
        metrics.requests.labels(status="422", arm=NO_ARM).inc()
        raise
    accept = request.headers.get("accept")
    answer_as = answer_format(accept)
    if answer_as is None:
        metrics.requests.labels(status="406", arm=NO_ARM).inc()
        spoken = ", ".join([*ANSWER_TYPES.values(), MSGPACK_TYPES[1]])
        return JSONResponse(
            {"detail": f"cannot answer in {accept!r} (Accept); /prerank answers in: {spoken}"},
            status_code=406,
        )
    body = await read_body(request, state.settings.max_body_bytes)
    if body is None:
        metrics.requests.labels(status="413", arm=NO_ARM).inc()
        limit = state.settings.max_body_bytes
        detail = [
            {
                "type": "too_large",
                "loc": ["body"],
                "msg": f"body larger than {limit} bytes (PRERANK_MAX_BODY_BYTES)",
            }
        ]
        return JSONResponse({"detail": detail}, status_code=413)
    started = time.perf_counter()
    try:
        answer = await run_request_work(
            state.settings.request_threads,
            rank,
            body,
            serving,
            state.store,
            metrics,
            state.settings.max_candidates,
            state.settings.max_request_history,
            deadline,
            state.loss.stores,
            body_format(request),
            answer_as,
        )
    except RequestValidationError:
        metrics.requests.labels(status="422", arm=NO_ARM).inc()
        raise
    except Exception:
        metrics.requests.labels(status="500", arm=NO_ARM).inc()
        raise
    metrics.request_seconds.labels(arm=answer.arm).observe(time.perf_counter() - started)
    metrics.requests.labels(status="200", arm=answer.arm).inc()
    return Response(
        answer.payload,
        media_type=ANSWER_TYPES[answer_as],
        headers={WORKER_HEADER: str(os.getpid()), "Vary": "Accept"},
    )


@api_router.get(
    "/clusters",
    response_model=ClustersResponse,
    responses={
        404: {"description": "no version serves that arm"},
        503: {"description": "no model"},
    },
)
async def clusters(
    state: State,
    arm: Annotated[Arm, Query(description="the arm whose version to describe")] = CONTROL,
) -> ClustersResponse:
    """The meta-matrix clusters of a serving version: each meta vector, how many catalogue items
    it represents, and a few of them. `explain` on /prerank names each item's cluster."""
    serving = state.serving
    if serving is None:
        raise HTTPException(503, state.not_ready_reason)
    snapshot = serving.arms.get(arm)
    if snapshot is None:
        raise HTTPException(404, f"no version serves the {arm} arm")
    sizes, starts, rows = await run_in_threadpool(lambda: snapshot.clusters)
    examples = state.settings.cluster_examples
    total = max(int(snapshot.item_ids.size), 1)
    return ClustersResponse(
        model_version=snapshot.version,
        model=snapshot.manifest.model_name,
        arm=arm,
        items=int(snapshot.item_ids.size),
        clusters=[
            Cluster(
                meta_index=k,
                size=int(size),
                share=int(size) / total,
                examples=snapshot.vocabulary.raw_item_ids(
                    snapshot.item_ids[rows[start : start + min(size, examples)]]
                ),
            )
            for k, (size, start) in enumerate(zip(sizes, starts, strict=True))
        ],
    )


@probe_router.get("/healthz")
async def healthz() -> dict[str, str]:
    """Liveness: the process answers."""
    return {"status": "ok"}


@probe_router.get(
    "/readyz",
    responses={503: {"description": "not ready: no model loaded yet, or shutting down"}},
)
async def readyz(request: Request, state: State) -> JSONResponse:
    """Readiness: a version is loaded and warmed and no shutdown is under way; the detail names
    every arm, any refusal and what is degraded (answers still flow, flagged), including what
    Redis lost since this process saw it there (`feature_store_lost`, `active_pointer_missing`,
    `version_lost`, each with since when). With API keys configured, a request without a valid
    key gets `{"ready": bool}` alone (same status code)."""
    ready = state.serving is not None and not state.draining
    if not await may_see_detail(request, state):
        return JSONResponse({"ready": ready}, status_code=200 if ready else 503)
    return readiness_detail(state)


def readiness_detail(state: ServiceState) -> JSONResponse:
    """/readyz with its detail (503 when not ready)."""
    serving = state.serving
    refusals = [{"version": r.version, "reason": r.reason} for r in list(state.refusals.values())]
    degraded = {
        part: problem
        for part, problem in (
            ("feature_store", state.store.describe()),
            ("model_updates", state.pointer_error),
        )
        if problem is not None
    } | state.loss.describe()
    if serving is None or state.draining:
        reason = "shutting down (SIGTERM)" if state.draining else state.not_ready_reason
        return JSONResponse(
            {"ready": False, "reason": reason, "refused": refusals, "degraded": degraded},
            status_code=503,
        )
    shares = serving.shares
    return JSONResponse(
        {
            "ready": True,
            "version": serving.control.version,
            "source": serving.control.source,
            "items": int(serving.control.item_ids.size),
            "arms": {
                arm: {
                    "version": snapshot.version,
                    "model": snapshot.manifest.model_name,
                    "share": shares[arm],
                }
                for arm, snapshot in serving.arms.items()
            },
            "refused": refusals,
            "degraded": degraded,
        }
    )


@api_router.get("/metrics", response_class=PlainTextResponse)
async def metrics(state: State) -> Response:
    return Response(state.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)
