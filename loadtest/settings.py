"""Typed settings of the load tools (``PRERANK_LOAD_*``, beside the common Redis settings)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydantic import Field

from prerank_contract.manifest import ITEM_IDS_FILE
from prerank_contract.settings import CommonSettings

REPO_ROOT = Path(__file__).resolve().parent.parent


class LoadSettings(CommonSettings):
    """What a simulated caller sends: candidate ids drawn from a bundle's catalogue."""

    load_bundle_dir: Path = Field(
        default=REPO_ROOT / "artifacts" / "bundles" / "current",
        description="bundle whose item ids the load draws candidates from",
    )
    load_candidates: int = Field(default=1_000, ge=1, description="candidates per request")
    load_users: int = Field(default=10_000, ge=1, description="user ids drawn from [0, users)")
    load_history: int = Field(default=20, ge=0, description="history ids sent per request")
    load_top_k: int = Field(default=200, ge=1, description="top_k of each request")
    load_seed: int = Field(default=0, description="seed of the drawn requests")

    def catalogue(self) -> np.ndarray:
        """[N] int64 item ids of the bundle's catalogue."""
        path = self.load_bundle_dir / ITEM_IDS_FILE
        if not path.is_file():
            raise FileNotFoundError(
                f"{path}: no catalogue to draw candidates from (set PRERANK_LOAD_BUNDLE_DIR to a "
                "bundle directory, e.g. artifacts/bundles/current after `make train`)"
            )
        return np.load(path, allow_pickle=False).astype(np.int64)


def request_bodies(settings: LoadSettings, count: int) -> list[bytes]:
    """`count` JSON /prerank bodies drawn with the settings' seed (drawn once, reused by users)."""
    import orjson

    catalogue = settings.catalogue()
    rng = np.random.default_rng(settings.load_seed)
    size = min(settings.load_candidates, catalogue.size)
    bodies = []
    for _ in range(count):
        ids = catalogue[rng.choice(catalogue.size, size=size, replace=False)]
        history = catalogue[rng.choice(catalogue.size, size=settings.load_history)]
        bodies.append(
            orjson.dumps(
                {
                    "user_id": int(rng.integers(settings.load_users)),
                    "history": history.tolist(),
                    "candidates": ids.tolist(),
                    "top_k": settings.load_top_k,
                }
            )
        )
    return bodies


class StackSettings(CommonSettings):
    """The local stack of ``python -m loadtest.stack`` (``PRERANK_STACK_*``): docker-compose.yml's
    topology as processes on this machine."""

    stack_service_ports: tuple[int, ...] = Field(
        default=(8000, 8001),
        min_length=1,
        description="one service replica per port (compose: service-1 on 8000, service-2 on 8001)",
    )
    stack_host: str = Field(
        default="127.0.0.1", description="address the replicas and Prometheus listen on"
    )
    stack_prometheus_port: int = Field(default=9090, ge=1, le=65535, description="Prometheus port")
    stack_scrape_interval_seconds: float | None = Field(
        default=None,
        gt=0,
        description="scrape and rule interval (default: docker/prometheus/prometheus.yml's)",
    )
    stack_install_prometheus: bool = Field(
        default=True, description="apt-get install prometheus when it is missing (as root)"
    )
    stack_state_dir: Path = Field(
        default=REPO_ROOT / "artifacts" / "stack",
        description="logs of every process, the Prometheus config and its data",
    )
    stack_ready_timeout_seconds: float = Field(
        default=120.0, gt=0, description="how long a started process may take to answer"
    )
    stack_stop_timeout_seconds: float = Field(
        default=40.0,
        gt=0,
        description="grace after SIGTERM before SIGKILL (over a replica's shutdown drain and "
        "timeout, PRERANK_SHUTDOWN_DRAIN_SECONDS + PRERANK_SHUTDOWN_TIMEOUT_SECONDS)",
    )
    stack_install_timeout_seconds: float = Field(
        default=600.0, gt=0, description="longest apt-get run"
    )
