"""HTTP routes: /prerank, /healthz, /readyz, /metrics."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool

from service.ranking import rank
from service.schemas import PrerankRequest, PrerankResponse
from service.state import ServiceState

router = APIRouter()


def get_state(request: Request) -> ServiceState:
    state: ServiceState = request.app.state.prerank
    return state


State = Annotated[ServiceState, Depends(get_state)]

_PRERANK_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": PrerankRequest.model_json_schema()}},
    }
}


@router.post(
    "/prerank",
    response_model=PrerankResponse,
    openapi_extra=_PRERANK_BODY,
    responses={503: {"description": "no model loaded yet"}},
)
async def prerank(request: Request, state: State) -> Response:
    """Score every candidate for the user, best first. CPU work runs off the event loop."""
    metrics = state.metrics
    snapshot = state.snapshot  # one read: the whole request uses one version
    if snapshot is None:
        metrics.requests.labels(status="503").inc()
        return JSONResponse({"detail": state.not_ready_reason}, status_code=503)
    body = await request.body()
    started = time.perf_counter()
    try:
        payload = await run_in_threadpool(
            rank,
            body,
            snapshot,
            state.store,
            metrics,
            state.settings.max_candidates,
            state.settings.max_request_history,
        )
    except RequestValidationError:
        metrics.requests.labels(status="422").inc()
        raise
    except Exception:
        metrics.requests.labels(status="500").inc()
        raise
    metrics.request_seconds.observe(time.perf_counter() - started)
    metrics.requests.labels(status="200").inc()
    return Response(payload, media_type="application/json")


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """Liveness: the process answers."""
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(state: State) -> JSONResponse:
    """Readiness: a version is loaded and warmed."""
    snapshot = state.snapshot
    if snapshot is None:
        return JSONResponse({"ready": False, "reason": state.not_ready_reason}, status_code=503)
    return JSONResponse(
        {
            "ready": True,
            "version": snapshot.version,
            "source": snapshot.source,
            "items": int(snapshot.item_ids.size),
        }
    )


@router.get("/metrics")
async def metrics(state: State) -> Response:
    return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
