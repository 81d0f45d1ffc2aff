"""The one launcher of the service for tests, benchmarks, soak, stack and memory runs: `python -m
service` on a free loopback port with given settings, ready once `/readyz` says so, stopped on
exit, its output in a log file."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
import psutil

from offline_jobs.settings import REPO_ROOT
from prerank_contract.keys import RedisKeys
from prerank_contract.settings import ENV_PREFIX, CommonSettings

START_TIMEOUT_SECONDS = 120.0
SWAP_TIMEOUT_SECONDS = 120.0
POLL_SECONDS = 0.05


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
