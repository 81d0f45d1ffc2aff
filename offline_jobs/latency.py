"""`/prerank` latency through the real service: a `python -m service` process on a free loopback
port, driven by a closed-loop client with pre-encoded bodies (one request at a time)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
import numpy as np
import orjson

from offline_jobs.data.dataset import InteractionData
from offline_jobs.settings import REPO_ROOT
from prerank_contract.http import DEADLINE_HEADER
from prerank_contract.keys import RedisKeys
from prerank_contract.settings import ENV_PREFIX, CommonSettings

START_TIMEOUT_SECONDS = 120.0
SWAP_TIMEOUT_SECONDS = 120.0
POLL_SECONDS = 0.05
REQUEST_TIMEOUT_SECONDS = 30.0
PERCENTILES = (50, 95, 99)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServiceProcess:
    """The service as its own process, serving `keys` from `settings.redis_url`; stopped on exit."""

    def __init__(
        self, settings: CommonSettings, keys: RedisKeys, log_path: Path, max_candidates: int
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
        env |= {
            f"{ENV_PREFIX}HOST": "127.0.0.1",
            f"{ENV_PREFIX}PORT": str(self.port),
            f"{ENV_PREFIX}REDIS_URL": settings.redis_url,
            f"{ENV_PREFIX}REDIS_KEY_PREFIX": keys.prefix,
            f"{ENV_PREFIX}MAX_CANDIDATES": str(max_candidates),
            f"{ENV_PREFIX}POLL_INTERVAL_SECONDS": "0.1",
            f"{ENV_PREFIX}GATE__MIN_AUC": "0",
            f"{ENV_PREFIX}LOG_LEVEL": "warning",
            f"{ENV_PREFIX}SHUTDOWN_DRAIN_SECONDS": "0",  # no load balancer to drain here
        }
        self._env = env
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> ServiceProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log_file:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "service"],
                cwd=REPO_ROOT,
                env=self._env,
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
        self._wait(lambda ready: ready.get("ready") is True, START_TIMEOUT_SECONDS, "ready")
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()

    def wait_for_version(self, version: str) -> None:
        self._wait(lambda ready: ready.get("version") == version, SWAP_TIMEOUT_SECONDS, version)

    def _wait(self, condition: Any, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"service exited; see {self.log_path}")
            try:
                if condition(httpx.get(f"{self.url}/readyz", timeout=5).json()):
                    return
            except httpx.HTTPError:
                pass
            time.sleep(POLL_SECONDS)
        raise TimeoutError(f"service not serving {what} within {timeout} s; see {self.log_path}")


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
        timings, errors, degraded = [], 0, 0
        # the full model's latency is measured: no deadline fallback within the request timeout
        headers = {
            "content-type": "application/json",
            DEADLINE_HEADER: str(REQUEST_TIMEOUT_SECONDS * 1000),
        }
        with httpx.Client(timeout=REQUEST_TIMEOUT_SECONDS) as client:
            for index, body in enumerate(bodies):
                started = time.perf_counter()
                response = client.post(f"{self.service.url}/prerank", content=body, headers=headers)
                elapsed = time.perf_counter() - started
                errors += response.status_code != 200
                degraded += response.status_code == 200 and response.json()["degraded"]
                if index >= warmup:
                    timings.append(elapsed * 1000)
        values = np.percentile(timings, PERCENTILES)
        return {
            "candidates_requested": wanted,
            "candidates": candidates,
            "requests": requests,
            "errors": errors,
            "degraded": degraded,
            **{f"p{p}_ms": round(float(v), 3) for p, v in zip(PERCENTILES, values, strict=True)},
        }
