"""docker-compose.yml's topology as local processes: ``python -m loadtest.stack`` (``make stack``).

Redis (the one at PRERANK_REDIS_URL, else a redis-server started here), the offline job (unless
a version is already active), the consumer of the user events stream, the service replicas
(`research.service_process`, the one launcher of the service) and Prometheus with the compose
config and alert rules (targets swapped for local ports). Ctrl-C or SIGTERM stops what it
started, and only that. `Stack` is the same topology as a context manager, for tests."""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx
import yaml

from loadtest.settings import REPO_ROOT, StackSettings
from prerank_contract.redis_client import REDIS_ERRORS
from prerank_contract.redis_store import active_version
from prerank_contract.settings import ENV_PREFIX, configure_logging, load_settings
from research.service_process import ServiceProcess

log = logging.getLogger("loadtest.stack")  # the same name when run as __main__

PROMETHEUS_DIR = REPO_ROOT / "docker" / "prometheus"
PROMETHEUS_CONFIG = PROMETHEUS_DIR / "prometheus.yml"
ALERT_RULES = PROMETHEUS_DIR / "alerts.yml"
SERVICE_JOB = "prerank"  # prometheus.yml's job scraping the replicas
SELF_JOB = "prometheus"  # prometheus.yml's job scraping Prometheus itself
EVENTS_JOB = "prerank-events"  # prometheus.yml's job scraping the event consumer
LOCAL_REDIS_HOSTS = ("127.0.0.1", "localhost", "::1")  # where starting a redis-server helps
DEFAULT_REDIS_PORT = 6379
POLL_SECONDS = 0.2  # between readiness checks
PROBE_TIMEOUT_SECONDS = 2.0  # one readiness request
WATCH_SECONDS = 1.0  # between checks that every started process still runs


class PrometheusUnavailableError(RuntimeError):
    """Prometheus is not installed and cannot be installed here; the message says why."""


class Started(Protocol):
    """A process the stack started (a `Child`, or a service replica's `ServiceProcess`)."""

    name: str
    log_path: Path

    @property
    def process(self) -> subprocess.Popen[bytes] | None: ...

    def running(self) -> bool: ...

    def terminate(self) -> None: ...

    def wait(self, timeout_seconds: float) -> None: ...


@dataclass
class Child:
    """A process the stack started other than a replica (Redis, Prometheus), with its log."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def running(self) -> bool:
        return self.process.poll() is None

    def terminate(self) -> None:
        if self.running():
            self.process.terminate()

    def wait(self, timeout_seconds: float) -> None:
        """Wait for it to exit; SIGKILL after `timeout_seconds`."""
        try:
            self.process.wait(timeout=timeout_seconds)
        except subprocess.TimeoutExpired:
            log.warning("%s did not stop within %s s: killed", self.name, timeout_seconds)
            self.process.kill()
            self.process.wait()


def stop_together(children: Sequence[Started], timeout_seconds: float) -> None:
    """SIGTERM all, then wait for each: replicas drain side by side, not one after another."""
    for child in children:
        if child.running():
            log.info("stopping %s", child.name)
            child.terminate()
    for child in children:
        child.wait(timeout_seconds)


def spawn(name: str, command: list[str], env: Mapping[str, str], log_dir: Path) -> Child:
    """Start `command` in its own session (a Ctrl-C reaches the stack, which stops it in order)."""
    log_path = log_dir / f"{name}.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            command,
            cwd=REPO_ROOT,
            env=dict(env),
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    log.info("started %s (pid %d), log %s", name, process.pid, log_path)
    return Child(name, process, log_path)


def wait_until(child: Child, ready: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll `ready` until it holds; fail when the child exits or `timeout` passes."""
    deadline = time.monotonic() + timeout
    while not ready():
        if not child.running():
            raise RuntimeError(f"{child.name} exited before {what}; see {child.log_path}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{child.name}: not {what} within {timeout} s; see {child.log_path}")
        time.sleep(POLL_SECONDS)


def answers_200(url: str) -> Callable[[], bool]:
    def check() -> bool:
        try:
            return httpx.get(url, timeout=PROBE_TIMEOUT_SECONDS).status_code == 200
        except httpx.HTTPError:
            return False

    return check


def redis_answers(settings: StackSettings) -> bool:
    try:
        settings.connect_redis().close()
    except REDIS_ERRORS:
        return False
    return True


def start_redis(settings: StackSettings, log_dir: Path) -> Child:
    """A redis-server where PRERANK_REDIS_URL points (loopback only), persisted as
    docker-compose.yml's is: an append-only file fsynced once a second, in the stack's state
    directory, so the next stack (or this Redis restarted) finds what was published."""
    url = urlsplit(settings.redis_url)
    host, port = url.hostname or LOCAL_REDIS_HOSTS[0], url.port or DEFAULT_REDIS_PORT
    if host not in LOCAL_REDIS_HOSTS:
        raise RuntimeError(
            f"Redis at {settings.redis_url_redacted} does not answer (not local: not started)"
        )
    if shutil.which("redis-server") is None:
        raise RuntimeError(
            f"Redis at {settings.redis_url_redacted} does not answer and no redis-server"
        )
    data_dir = log_dir.parent / "redis"
    data_dir.mkdir(parents=True, exist_ok=True)
    command = ["redis-server", "--port", str(port), "--bind", host]
    command += ["--save", "", "--appendonly", "yes", "--appendfsync", "everysec"]
    command += ["--dir", str(data_dir)]
    return spawn("redis", command, os.environ, log_dir)


def apt_get(args: list[str], log_path: Path, timeout: float) -> bool:
    """Whether `apt-get ARGS` succeeded within `timeout` (its output appended to `log_path`)."""
    with log_path.open("ab") as log_file:
        try:
            done = subprocess.run(
                ["apt-get", *args],
                env=os.environ | {"DEBIAN_FRONTEND": "noninteractive"},
                stdout=log_file,
                stderr=subprocess.STDOUT,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return False
    return done.returncode == 0


def find_or_install_prometheus(settings: StackSettings, log_dir: Path) -> str:
    """Path of the `prometheus` binary; installs Debian's package when missing and allowed."""
    if found := shutil.which("prometheus"):
        return found
    if not settings.stack_install_prometheus:
        raise PrometheusUnavailableError(
            f"not installed ({ENV_PREFIX}STACK_INSTALL_PROMETHEUS=false)"
        )
    if shutil.which("apt-get") is None:
        raise PrometheusUnavailableError("not installed, and no apt-get to install it")
    if os.geteuid() != 0:
        raise PrometheusUnavailableError(
            "not installed; installing needs root: apt-get install prometheus"
        )
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / "apt-get.log"
    log.info("installing Prometheus: apt-get install prometheus (log %s)", log_path)
    install = ["install", "-y", "--no-install-recommends", "prometheus"]
    timeout = settings.stack_install_timeout_seconds
    if not apt_get(install, log_path, timeout):  # a stale package index: update, try again
        apt_get(["update"], log_path, timeout)
        apt_get(install, log_path, timeout)
    if found := shutil.which("prometheus"):
        return found
    raise PrometheusUnavailableError(f"apt-get install prometheus failed; see {log_path}")


def local_prometheus_config(
    replicas: list[str],
    listen: str,
    scrape_interval_seconds: float | None,
    events: Sequence[str] = (),
) -> dict[str, Any]:
    """docker/prometheus/prometheus.yml with the local addresses of the replicas, Prometheus and
    the event consumer (`events`)."""
    config: dict[str, Any] = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    targets = {SERVICE_JOB: replicas, SELF_JOB: [listen], EVENTS_JOB: list(events)}
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    if missing := set(targets) - set(jobs):
        raise ValueError(f"{PROMETHEUS_CONFIG} has no scrape job {sorted(missing)}")
    for name, addresses in targets.items():
        jobs[name]["static_configs"] = [{"targets": addresses}]
    if scrape_interval_seconds is not None:
        interval = f"{round(scrape_interval_seconds * 1000)}ms"
        config["global"] |= {"scrape_interval": interval, "evaluation_interval": interval}
    return config


class Stack:
    """Redis, the published version, the event consumer, the service replicas and Prometheus,
    started on enter and stopped on exit in reverse order (only what this stack started)."""

    def __init__(
        self,
        settings: StackSettings,
        *,
        retrain: bool = False,
        extra_env: Mapping[str, str] | None = None,
    ) -> None:
        self.settings = settings
        self.retrain = retrain
        self.state_dir = settings.stack_state_dir
        self.log_dir = self.state_dir / "logs"
        self.replica_addresses = [(settings.stack_host, p) for p in settings.stack_service_ports]
        self.replica_urls = [f"http://{host}:{port}" for host, port in self.replica_addresses]
        self.events_address = f"{settings.stack_host}:{settings.stack_events_metrics_port}"
        self.prometheus_url: str | None = None
        self.prometheus_skipped: str | None = None
        self.children: list[Started] = []
        self.env = dict(os.environ) | {
            f"{ENV_PREFIX}REDIS_URL": settings.redis_url,
            f"{ENV_PREFIX}REDIS_KEY_PREFIX": settings.redis_key_prefix,
            **(extra_env or {}),
        }
        self._cleanup = ExitStack()

    def __enter__(self) -> Stack:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with ExitStack() as cleanup:
            if redis_answers(self.settings):
                log.info("using the Redis at %s", self.settings.redis_url_redacted)
            else:
                redis_server = start_redis(self.settings, self.log_dir)
                self._started(cleanup, redis_server)
                wait_until(
                    redis_server,
                    lambda: redis_answers(self.settings),
                    self.settings.stack_ready_timeout_seconds,
                    "answering PING",
                )
            self._ensure_published()
            self._start_events(cleanup)
            self._start_replicas(cleanup)
            self._start_prometheus(cleanup)
            self._cleanup = cleanup.pop_all()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._cleanup.close()

    def exited(self) -> list[Started]:
        """Started processes that are no longer running."""
        return [child for child in self.children if not child.running()]

    def summary(self) -> str:
        redis_url, prefix = self.settings.redis_url_redacted, self.settings.redis_key_prefix
        lines = [f"Redis       {redis_url} (keys {prefix}*)"]
        for index, url in enumerate(self.replica_urls, start=1):
            lines.append(f"service-{index}   {url}/prerank  {url}/readyz  {url}/metrics")
        if self.prometheus_url is not None:
            lines.append(f"Prometheus  {self.prometheus_url}  {self.prometheus_url}/alerts")
        else:
            lines.append(f"Prometheus  skipped: {self.prometheus_skipped}")
        lines.append(
            f"events      consumer of {prefix}events, http://{self.events_address}/metrics"
        )
        lines.append(f"logs        {self.log_dir}")
        return "\n".join(lines)

    def _started(self, cleanup: ExitStack, *children: Started) -> None:
        """Record `children` and stop them (together) when the stack closes."""
        self.children.extend(children)
        cleanup.callback(stop_together, list(children), self.settings.stack_stop_timeout_seconds)

    def _ensure_published(self) -> None:
        """Run the offline job (train + publish) unless a version is active or `retrain`."""
        client = self.settings.connect_redis()
        try:
            version = active_version(client, self.settings.keys)
        finally:
            client.close()
        if version is not None and not self.retrain:
            log.info("active version %s already published; --retrain trains again", version)
            return
        command = [sys.executable, "-m", "offline_jobs", "run"]
        command += ["--retrain"] if self.retrain else []
        log.info("running the offline job: %s", " ".join(command[1:]))
        if subprocess.run(command, cwd=REPO_ROOT, env=self.env, check=False).returncode != 0:
            raise RuntimeError("the offline job failed (its output is above)")

    def _start_events(self, cleanup: ExitStack) -> None:
        """One consumer of the events stream (as docker-compose.yml's `events`), its metrics
        on `stack_events_metrics_port`; waited for until they answer."""
        env = self.env | {
            f"{ENV_PREFIX}EVENTS_METRICS_PORT": str(self.settings.stack_events_metrics_port)
        }
        command = [sys.executable, "-m", "offline_jobs.events"]
        events = spawn("events", command, env, self.log_dir)
        self._started(cleanup, events)
        ready = answers_200(f"http://{self.events_address}/metrics")
        wait_until(events, ready, self.settings.stack_ready_timeout_seconds, "serving metrics")

    def _start_replicas(self, cleanup: ExitStack) -> None:
        """Every replica started at once (they load side by side), then each waited for."""
        replicas = [
            ServiceProcess.from_env(
                self.env,
                self.log_dir / f"service-{index}.log",
                name=f"service-{index}",
                address=address,
                start_timeout_seconds=self.settings.stack_ready_timeout_seconds,
            )
            for index, address in enumerate(self.replica_addresses, start=1)
        ]
        self._started(cleanup, *replicas)
        for replica in replicas:
            replica.spawn()
            log.info("started %s, log %s", replica.name, replica.log_path)
        for replica in replicas:
            replica.wait_until_ready()
            log.info("%s ready at %s", replica.name, replica.url)

    def _start_prometheus(self, cleanup: ExitStack) -> None:
        try:
            binary = find_or_install_prometheus(self.settings, self.log_dir)
        except PrometheusUnavailableError as exc:
            self.prometheus_skipped = str(exc)
            log.warning("Prometheus skipped: %s", exc)
            return
        listen = f"{self.settings.stack_host}:{self.settings.stack_prometheus_port}"
        config_dir = self.state_dir / "prometheus"
        config_dir.mkdir(parents=True, exist_ok=True)
        config = local_prometheus_config(
            [f"{host}:{port}" for host, port in self.replica_addresses],
            listen,
            self.settings.stack_scrape_interval_seconds,
            [self.events_address],
        )
        config_path = config_dir / PROMETHEUS_CONFIG.name
        config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        shutil.copyfile(ALERT_RULES, config_dir / ALERT_RULES.name)  # rule_files: beside it
        command = [
            binary,
            f"--config.file={config_path}",
            f"--storage.tsdb.path={config_dir / 'data'}",
            f"--web.listen-address={listen}",
        ]
        prometheus = spawn("prometheus", command, os.environ, self.log_dir)
        self._started(cleanup, prometheus)
        url = f"http://{listen}"
        ready = answers_200(f"{url}/-/ready")
        wait_until(prometheus, ready, self.settings.stack_ready_timeout_seconds, "ready")
        self.prometheus_url = url
        log.info("Prometheus ready at %s, config %s", url, config_path)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # SIGTERM stops the stack the way Ctrl-C does


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m loadtest.stack",
        description="docker-compose.yml's topology as local processes (PRERANK_STACK_* settings).",
    )
    parser.add_argument(
        "--retrain", action="store_true", help="run the offline job even if a version is active"
    )
    args = parser.parse_args(argv)
    configure_logging(logging.INFO)
    settings = load_settings(StackSettings)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        with Stack(settings, retrain=args.retrain) as stack:
            print(stack.summary(), flush=True)
            print("Ctrl-C stops the stack.", flush=True)
            while not (exited := stack.exited()):
                time.sleep(WATCH_SECONDS)
            for child in exited:
                code = None if child.process is None else child.process.returncode
                log.error("%s exited (%s); see %s", child.name, code, child.log_path)
            return 1
    except (RuntimeError, TimeoutError, *REDIS_ERRORS) as exc:
        log.error("%s", exc)
        return 1
    except KeyboardInterrupt:
        log.info("stopped")
        return 0


if __name__ == "__main__":
    sys.exit(main())
