"""`/prerank` latency of a reproduced model through the real service, with bodies drawn from the
dataset's users and catalogue."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson

from offline_jobs.data.dataset import InteractionData
from prerank_contract.http import DEADLINE_HEADER
from research.http_client import PERCENTILES, REQUEST_TIMEOUT_SECONDS, closed_loop
from research.service_process import ServiceProcess


class LatencyProbe:
    """Closed-loop timing of `/prerank` with bodies drawn from the data's users and catalogue."""

    def __init__(self, service: ServiceProcess, data: InteractionData, seed: int) -> None:
        self.service = service
        self.data = data
        self.rng = np.random.default_rng(seed)

    def bodies(self, candidates: int, count: int) -> list[bytes]:
        users = self.rng.integers(1, self.data.num_users + 1, size=count)
        return [
            orjson.dumps(
                {
                    "user_id": int(user),
                    "candidates": self.rng.choice(
                        self.data.catalogue, size=candidates, replace=False
                    ).tolist(),
                }
            )
            for user in users
        ]

    def run(self, wanted: int, requests: int, warmup: int) -> dict[str, Any]:
        """Percentiles (ms) of `requests` timed requests of min(wanted, catalogue) candidates."""
        candidates = min(wanted, self.data.num_items)
        bodies = self.bodies(candidates, warmup + requests)
        # the full model's latency is measured: no deadline fallback within the request timeout
        headers = {DEADLINE_HEADER: str(REQUEST_TIMEOUT_SECONDS * 1000)}
        url = f"{self.service.url}/prerank"
        warm = closed_loop(url, bodies[:warmup], headers)
        timed = closed_loop(url, bodies[warmup:], headers)
        values = np.percentile(timed.latencies_ms, PERCENTILES)
        return {
            "candidates_requested": wanted,
            "candidates": candidates,
            "requests": requests,
            "errors": warm.errors + timed.errors,
            "degraded": warm.degraded + timed.degraded,
            **{f"p{p}_ms": round(float(v), 3) for p, v in zip(PERCENTILES, values, strict=True)},
        }
