"""`/prerank` latency through the real service: a `python -m service` process on a free loopback
port (serving from Redis, or a local bundle directory), driven by a closed-loop client with
pre-encoded bodies (one connection, one request at a time)."""

from __future__ import annotations

import http.client
import os
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import httpx
import numpy as np
import orjson
import psutil

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
    """The service as its own process, serving `keys` from `settings.redis_url`; stopped on exit.

    `env_overrides` adds or overrides PRERANK_* variables (e.g. a local bundle, `from_bundle_dir`);
    `module` is what `python -m` runs: the service, or a stand-in on the same settings (the
    benchmark's echo server). Ready once `/readyz` says `"ready": true`.
    """

    def __init__(
        self,
        settings: CommonSettings,
        keys: RedisKeys,
        log_path: Path,
        max_candidates: int,
        *,
        env_overrides: Mapping[str, str] | None = None,
        module: str = "service",
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
        env |= {
            f"{ENV_PREFIX}HOST": "127.0.0.1",
            f"{ENV_PREFIX}PORT": str(self.port),
            f"{ENV_PREFIX}REDIS_URL": settings.redis_url,
            f"{ENV_PREFIX}REDIS_CLUSTER": str(settings.redis_cluster).lower(),
            f"{ENV_PREFIX}REDIS_KEY_PREFIX": keys.prefix,
            f"{ENV_PREFIX}MAX_CANDIDATES": str(max_candidates),
            f"{ENV_PREFIX}POLL_INTERVAL_SECONDS": "0.1",
            f"{ENV_PREFIX}GATE__MIN_AUC": "0",
            f"{ENV_PREFIX}LOG_LEVEL": "warning",
            f"{ENV_PREFIX}SHUTDOWN_DRAIN_SECONDS": "0",  # no load balancer to drain here
        }
        self._env = env | dict(env_overrides or {})
        self.module = module
        self.process: subprocess.Popen[bytes] | None = None

    @classmethod
    def from_bundle_dir(
        cls,
        bundle_dir: Path | None,
        log_path: Path,
        max_candidates: int,
        *,
        env_overrides: Mapping[str, str] | None = None,
        module: str = "service",
    ) -> ServiceProcess:
        """Serving the bundle directory `bundle_dir` with Redis unused (no version pointers, no
        feature store: requests carry their own user features and history)."""
        local = {f"{ENV_PREFIX}USE_REDIS": "false"}
        if bundle_dir is not None:
            local[f"{ENV_PREFIX}BUNDLE_DIR"] = str(bundle_dir)
        settings = CommonSettings()
        return cls(
            settings,
            settings.keys,
            log_path,
            max_candidates,
            env_overrides=local | dict(env_overrides or {}),
            module=module,
        )

    def processes(self) -> list[psutil.Process]:
        """The server process and every process it started (worker processes), alive now."""
        assert self.process is not None
        root = psutil.Process(self.process.pid)
        return [root, *root.children(recursive=True)]

    def __enter__(self) -> ServiceProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log_file:
            self.process = subprocess.Popen(
                [sys.executable, "-m", self.module],
                cwd=REPO_ROOT,
                env=self._env,
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
        try:
            self._wait(lambda ready: ready.get("ready") is True, START_TIMEOUT_SECONDS, "ready")
        except BaseException:
            self.__exit__(None, None, None)  # no process is left behind by a failed start
            raise
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
