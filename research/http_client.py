"""The measurements' HTTP client (Locust aside): closed-loop `/prerank` requests with pre-encoded
bodies, one connection, one request at a time."""

from __future__ import annotations

import http.client
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

import numpy as np
import orjson

REQUEST_TIMEOUT_SECONDS = 30.0
PERCENTILES = (50, 95, 99)


@dataclass(frozen=True)
class ClosedLoopRun:
    """What one closed-loop pass measured: per-request latencies and the pass's wall time."""

    latencies_ms: np.ndarray  # [requests] float64, in sending order
    wall_seconds: float
    errors: int  # answers other than 200, and requests that got no answer
    degraded: int  # 200 answers flagged degraded
    degraded_reasons: dict[str, int]  # reason -> answers degraded for it, e.g. {"deadline": 3}


def closed_loop(
    url: str,
    bodies: Sequence[bytes],
    headers: Mapping[str, str] | None = None,
    timeout: float = REQUEST_TIMEOUT_SECONDS,
) -> ClosedLoopRun:
    """POST each body to `url` in turn on one persistent connection, the next one sent when the
    previous answer is read. http.client rather than httpx keeps the client's own cost per
    request small next to the server's."""
    parts = urlsplit(url)
    sent_headers = {"content-type": "application/json", **(headers or {})}
    latencies = np.zeros(len(bodies), dtype=np.float64)
    errors = degraded = 0
    reasons: Counter[str] = Counter()
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=timeout)
    connection.connect()  # outside the timed requests
    started = time.perf_counter()
    try:
        for index, body in enumerate(bodies):
            sent = time.perf_counter()
            try:
                connection.request("POST", parts.path, body=body, headers=sent_headers)
                response = connection.getresponse()
                answer = response.read()
            except (OSError, http.client.HTTPException):
                latencies[index] = (time.perf_counter() - sent) * 1000
                errors += 1
                connection.close()  # the next request reconnects
                continue
            latencies[index] = (time.perf_counter() - sent) * 1000
            if response.status != 200:
                errors += 1
            else:
                parsed = orjson.loads(answer)
                degraded += bool(parsed.get("degraded"))
                reasons.update(parsed.get("degraded_reasons", ()))
    finally:
        wall = time.perf_counter() - started
        connection.close()
    return ClosedLoopRun(latencies, wall, errors, degraded, dict(reasons))
