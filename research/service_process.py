"""The one launcher of the service, for tests, benchmarks, soak, stack and memory runs: `python -m
service` (or a stand-in on the same settings) on a given or free port, ready once a probe holds,
stopped with SIGTERM (SIGKILL after a grace), its output in a log file."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType

import httpx
import psutil

from prerank_contract.keys import RedisKeys
from prerank_contract.settings import ENV_PREFIX, CommonSettings
from research.settings import REPO_ROOT

log = logging.getLogger("research.service_process")

SERVICE_MODULE = "service"
LOOPBACK = "127.0.0.1"
START_TIMEOUT_SECONDS = 120.0
SWAP_TIMEOUT_SECONDS = 120.0
STOP_TIMEOUT_SECONDS = 10.0
PROBE_TIMEOUT_SECONDS = 5.0
POLL_SECONDS = 0.05

Probe = Callable[[str], bool]
"""Whether the service at a base URL is there yet (raising an HTTP error means: not yet)."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def is_ready(url: str) -> bool:
    """/readyz says `"ready": true`: a version is loaded, verified and warmed up."""
    return httpx.get(f"{url}/readyz", timeout=PROBE_TIMEOUT_SECONDS).json().get("ready") is True


def is_alive(url: str) -> bool:
    """/healthz answers 200: start-up is over and the server listens, with or without a model
    (for a service that is meant never to become ready)."""
    return httpx.get(f"{url}/healthz", timeout=PROBE_TIMEOUT_SECONDS).status_code == 200


def serves_version(version: str) -> Probe:
    """/readyz names `version` as the one serving."""

    def probe(url: str) -> bool:
        answer = httpx.get(f"{url}/readyz", timeout=PROBE_TIMEOUT_SECONDS).json()
        return bool(answer.get("version") == version)

    return probe


def measured_env(settings: CommonSettings, keys: RedisKeys, max_candidates: int) -> dict[str, str]:
    """PRERANK_* of a service under measurement: `keys` of `settings.redis_url`, every version
    let through the gate (the measurement decides what it serves), quick to see a new pointer,
    quiet, and stopped without a drain (no load balancer here)."""
    return {
        f"{ENV_PREFIX}REDIS_URL": settings.redis_url,
        f"{ENV_PREFIX}REDIS_CLUSTER": str(settings.redis_cluster).lower(),
        f"{ENV_PREFIX}REDIS_KEY_PREFIX": keys.prefix,
        f"{ENV_PREFIX}MAX_CANDIDATES": str(max_candidates),
        f"{ENV_PREFIX}POLL_INTERVAL_SECONDS": "0.1",
        f"{ENV_PREFIX}GATE__MIN_AUC": "0",
        f"{ENV_PREFIX}LOG_LEVEL": "warning",
        f"{ENV_PREFIX}SHUTDOWN_DRAIN_SECONDS": "0",
    }


class ServiceProcess:
    """The service as its own process, serving `keys` from `settings.redis_url` (`measured_env`);
    started on enter (or `start`), stopped on exit (or `stop`).

    `env_overrides` adds or overrides PRERANK_* variables (e.g. a local bundle, `from_bundle_dir`);
    `module` is what `python -m` runs: the service, or a stand-in on the same settings (the
    benchmark's echo server). Ready once `/readyz` says `"ready": true`. `from_env` starts one
    configured by its environment alone (tests, the stack, the memory benchmark).
    """

    def __init__(
        self,
        settings: CommonSettings,
        keys: RedisKeys,
        log_path: Path,
        max_candidates: int,
        *,
        env_overrides: Mapping[str, str] | None = None,
        module: str = SERVICE_MODULE,
    ) -> None:
        env = measured_env(settings, keys, max_candidates) | dict(env_overrides or {})
        self._configure(
            env,
            log_path,
            name=module,
            module=module,
            address=None,
            ready=is_ready,
            start_timeout_seconds=START_TIMEOUT_SECONDS,
        )

    @classmethod
    def from_bundle_dir(
        cls,
        bundle_dir: Path | None,
        log_path: Path,
        max_candidates: int,
        *,
        env_overrides: Mapping[str, str] | None = None,
        module: str = SERVICE_MODULE,
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

    @classmethod
    def from_env(
        cls,
        env: Mapping[str, str],
        log_path: Path,
        *,
        name: str = SERVICE_MODULE,
        module: str = SERVICE_MODULE,
        address: tuple[str, int] | None = None,
        ready: Probe = is_ready,
        start_timeout_seconds: float = START_TIMEOUT_SECONDS,
    ) -> ServiceProcess:
        """The service configured by `env` alone: PRERANK_* of this process are not inherited
        unless `env` carries them (the stack passes its whole environment). It listens at
        `address` (host, port), else on a free loopback port; `name` is what logs call it."""
        service = cls.__new__(cls)
        service._configure(
            env,
            log_path,
            name=name,
            module=module,
            address=address,
            ready=ready,
            start_timeout_seconds=start_timeout_seconds,
        )
        return service

    def _configure(
        self,
        env: Mapping[str, str],
        log_path: Path,
        *,
        name: str,
        module: str,
        address: tuple[str, int] | None,
        ready: Probe,
        start_timeout_seconds: float,
    ) -> None:
        host, self.port = address or (LOOPBACK, free_port())
        self.url = f"http://{host}:{self.port}"
        self.log_path = log_path
        self.name = name
        self.module = module
        self.process: subprocess.Popen[bytes] | None = None
        self._ready = ready
        self._start_timeout_seconds = start_timeout_seconds
        inherited = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
        listen = {f"{ENV_PREFIX}HOST": host, f"{ENV_PREFIX}PORT": str(self.port)}
        self._env = inherited | dict(env) | listen

    def spawn(self) -> None:
        """Start the process, not waiting for it. Its own session: a Ctrl-C reaches only the
        caller, which stops it in order (replicas drain side by side), and a SIGKILL after the
        grace reaches its worker processes too."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log_file:
            self.process = subprocess.Popen(
                [sys.executable, "-m", self.module],
                cwd=REPO_ROOT,
                env=self._env,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait_until_ready(self) -> None:
        """Block until the readiness probe holds; fails when the process exits or time runs out."""
        self._wait(self._ready, self._start_timeout_seconds, "ready")

    def start(self) -> ServiceProcess:
        """Spawn and wait until ready; a failed start leaves no process behind."""
        self.spawn()
        try:
            self.wait_until_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def wait_for_version(self, version: str) -> None:
        self._wait(serves_version(version), SWAP_TIMEOUT_SECONDS, version)

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def terminate(self) -> None:
        """SIGTERM: the service drains (PRERANK_SHUTDOWN_DRAIN_SECONDS) and exits."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()

    def wait(self, timeout_seconds: float) -> None:
        """Wait for the process to exit; SIGKILL its whole session after `timeout_seconds`."""
        if self.process is None:
            return
        try:
            self.process.wait(timeout=timeout_seconds)
        except subprocess.TimeoutExpired:
            log.warning("%s did not stop within %s s: killed", self.name, timeout_seconds)
            with contextlib.suppress(ProcessLookupError):  # gone meanwhile
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def stop(self, timeout_seconds: float = STOP_TIMEOUT_SECONDS) -> None:
        self.terminate()
        self.wait(timeout_seconds)

    def processes(self) -> list[psutil.Process]:
        """The server process and every process it started (worker processes), alive now."""
        assert self.process is not None
        root = psutil.Process(self.process.pid)
        return [root, *root.children(recursive=True)]

    def log(self) -> str:
        """What the process has written so far (stdout and stderr)."""
        return self.log_path.read_text(errors="replace")

    def __enter__(self) -> ServiceProcess:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.stop()

    def _wait(self, probe: Probe, timeout_seconds: float, what: str) -> None:
        deadline = time.monotonic() + timeout_seconds
        while time.monotonic() < deadline:
            if not self.running():
                raise RuntimeError(f"{self.name} exited before {what}; see {self.log_path}")
            try:
                if probe(self.url):
                    return
            except httpx.HTTPError:
                pass
            time.sleep(POLL_SECONDS)
        raise TimeoutError(
            f"{self.name} not serving {what} within {timeout_seconds} s; see {self.log_path}"
        )
