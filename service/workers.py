"""Several worker processes on one listening socket (``PRERANK_WORKERS`` > 1).

The parent binds the socket, points prometheus_client's multiprocess mode at a fresh directory
(`PROMETHEUS_MULTIPROC_DIR`, so /metrics of any worker sums all of them), and forks the workers
before it imports anything heavy; each worker builds its own app and serves the shared socket with
the draining server. A worker that dies is replaced. SIGTERM is passed on to every worker, which
drains (`service.server`); the parent waits for them and exits 0. The item table is shared
between workers through the bundle cache: each worker memory-maps the same cached files.
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import os
import shutil
import signal
import socket
import tempfile
import threading
from multiprocessing.context import ForkProcess
from pathlib import Path
from types import FrameType
from typing import Any

from service.settings import ServiceSettings

log = logging.getLogger(__name__)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
WATCH_SECONDS = 0.5  # how often the parent checks that every worker still runs
STOP_MARGIN_SECONDS = 5.0  # beyond a worker's drain and shutdown timeout, before SIGKILL


def bind(settings: ServiceSettings) -> socket.socket:
    """The listening socket every worker accepts on."""
    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((settings.host, settings.port))
    sock.listen(socket.SOMAXCONN)
    sock.set_inheritable(True)
    return sock


def uvicorn_config(app: Any, settings: ServiceSettings) -> Any:
    """The uvicorn.Config of a server process on `settings` (also the benchmark's echo server)."""
    import uvicorn

    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=False,
        timeout_graceful_shutdown=math.ceil(settings.shutdown_timeout_seconds),
    )


def serve_one(settings: ServiceSettings, sockets: list[socket.socket] | None = None) -> None:
    """One server process: build the app and serve (on `sockets`, else bind host:port)."""
    from service.app import create_app
    from service.server import DrainingServer

    app = create_app(settings)
    DrainingServer(uvicorn_config(app, settings), app.state.prerank).run(sockets=sockets)


class Supervisor:
    """Forks `settings.workers` workers on one socket and keeps them running until a signal."""

    def __init__(self, settings: ServiceSettings) -> None:
        self.settings = settings
        self._owned_dirs: list[Path] = []
        if settings.bundle_cache_dir is None:  # the workers share the item table through it
            cache = Path(tempfile.mkdtemp(prefix="prerank-cache-"))
            self._owned_dirs.append(cache)
            self.settings = settings.model_copy(update={"bundle_cache_dir": cache})
        self.metrics_dir = self._fresh_metrics_dir()
        self.socket = bind(settings)
        self.context = multiprocessing.get_context("fork")
        self.workers: list[ForkProcess] = []
        self.stop_signal: int | None = None
        self._stopping = threading.Event()

    def _fresh_metrics_dir(self) -> Path:
        configured = self.settings.metrics_dir
        if configured is None:
            path = Path(tempfile.mkdtemp(prefix="prerank-metrics-"))
            self._owned_dirs.append(path)
        else:
            path = configured
            shutil.rmtree(path, ignore_errors=True)  # values of an earlier run must not add up
            path.mkdir(parents=True)
        os.environ[MULTIPROC_ENV] = str(path)  # before any worker imports prometheus_client
        return path

    def _start_worker(self) -> ForkProcess:
        worker = self.context.Process(
            target=serve_one, args=(self.settings, [self.socket]), name="prerank-worker"
        )
        worker.start()
        log.info("worker %d started", worker.pid)
        return worker

    def _on_signal(self, sig: int, frame: FrameType | None) -> None:
        self.stop_signal = sig
        self._stopping.set()

    def run(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        log.info(
            "%d workers on %s:%d (metrics in %s)",
            self.settings.workers,
            self.settings.host,
            self.settings.port,
            self.metrics_dir,
        )
        self.workers = [self._start_worker() for _ in range(self.settings.workers)]
        try:
            while not self._stopping.wait(WATCH_SECONDS):
                self._replace_dead()
            self._stop_all()
        finally:
            self.socket.close()
            for path in self._owned_dirs:
                shutil.rmtree(path, ignore_errors=True)
        return 0

    def _replace_dead(self) -> None:
        from prometheus_client import multiprocess

        for index, worker in enumerate(self.workers):
            if worker.is_alive():
                continue
            log.error("worker %d exited with %s; starting another", worker.pid, worker.exitcode)
            if worker.pid is not None:
                multiprocess.mark_process_dead(worker.pid)
            self.workers[index] = self._start_worker()

    def _stop_all(self) -> None:
        """Pass the signal on (SIGTERM: each worker drains); SIGKILL what outlives its timeout."""
        sig = self.stop_signal or signal.SIGTERM
        log.info("passing %s to %d workers", signal.Signals(sig).name, len(self.workers))
        for worker in self.workers:
            if worker.is_alive() and worker.pid is not None:
                os.kill(worker.pid, sig)
        timeout = (
            self.settings.shutdown_drain_seconds
            + self.settings.shutdown_timeout_seconds
            + STOP_MARGIN_SECONDS
        )
        for worker in self.workers:
            worker.join(timeout)
            if worker.is_alive():
                log.warning("worker %d did not stop within %.0f s: killed", worker.pid, timeout)
                worker.kill()
                worker.join()
