"""Typed settings of the load tools: Locust's simulated callers (``PRERANK_LOAD_*``) and the local
stack (``PRERANK_STACK_*``), beside the common Redis settings."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydantic import Field, model_validator

from prerank_contract.bundle import read_manifest
from prerank_contract.http import AnswerFormat
from prerank_contract.manifest import ITEM_IDS_FILE
from prerank_contract.settings import CommonSettings

REPO_ROOT = Path(__file__).resolve().parent.parent


class LoadSettings(CommonSettings):
    """What a simulated caller sends (candidate ids drawn from a bundle's catalogue, user ids from
    the feature store) and how the headless run (``python -m loadtest.run``) drives the service."""

    load_bundle_dir: Path = Field(
        default=REPO_ROOT / "artifacts" / "bundles" / "current",
        description="bundle whose item ids the load draws candidates from",
    )
    load_candidates: int = Field(
        default=1_000, ge=1, description="candidates per request (the median list size)"
    )
    load_candidates_sigma: float = Field(
        default=0.0,
        ge=0,
        description="spread of the list sizes: sigma of a log-normal around load_candidates "
        "(0: every list has load_candidates ids)",
    )
    load_candidates_min: int = Field(default=1, ge=1, description="shortest candidate list")
    load_candidates_max: int | None = Field(
        default=None,
        ge=1,
        description="longest candidate list (None: the catalogue size); keep it within the "
        "service's PRERANK_MAX_CANDIDATES",
    )
    load_unknown_share: float = Field(
        default=0.01,
        ge=0,
        lt=1,
        description="expected share of each list's ids not in the catalogue",
    )
    load_duplicate_share: float = Field(
        default=0.02,
        ge=0,
        lt=1,
        description="expected share of each list's ids that repeat an id already in it",
    )
    load_users: int = Field(
        default=10_000,
        ge=1,
        description="user ids drawn from [0, users) when no published users are found",
    )
    load_published_users: bool = Field(
        default=True,
        description="draw user ids from the feature store (Redis records of the bundle's feature "
        "schema); False: from [0, load_users)",
    )
    load_published_users_limit: int = Field(
        default=100_000, ge=1, description="most user ids read from the feature store"
    )
    load_history: int = Field(
        default=20,
        ge=0,
        description="history ids sent per request (0: none sent, the feature store's is used)",
    )
    load_top_k: int = Field(default=200, ge=1, description="top_k of each request")
    load_wire_format: AnswerFormat = Field(
        default="json",
        description="how the Locust users speak to /prerank: json (JSON both ways), msgpack "
        "(MessagePack body and columnar MessagePack answer) or columnar_json (JSON body, "
        "columnar JSON answer)",
    )
    load_seed: int = Field(default=0, description="seed of the drawn requests")
    load_bodies: int = Field(
        default=512, ge=1, description="distinct request bodies, drawn once and cycled through"
    )
    load_host: str = Field(
        default="http://127.0.0.1:8000", description="service the headless run drives"
    )
    load_seconds: int = Field(
        default=60, ge=1, description="duration of a headless run with fixed users"
    )
    load_locust_users: int = Field(
        default=8, ge=1, description="concurrent Locust users of a headless run with fixed users"
    )
    load_spawn_rate: float | None = Field(
        default=None, gt=0, description="Locust users started per second (None: all at once)"
    )
    load_shape: bool = Field(
        default=False,
        description="the headless run follows the ramp/steady/spike shape (loadtest/shape.py) "
        "instead of fixed users",
    )
    load_shape_ramp_seconds: float = Field(
        default=30.0, gt=0, description="shape: time to start the steady users"
    )
    load_shape_users: int = Field(default=8, ge=1, description="shape: steady Locust users")
    load_shape_steady_seconds: float = Field(
        default=60.0, ge=0, description="shape: time at the steady users after the ramp"
    )
    load_shape_spike_users: int = Field(
        default=32, ge=1, description="shape: Locust users during the spike"
    )
    load_shape_spike_seconds: float = Field(
        default=15.0, ge=0, description="shape: spike duration (0: no spike)"
    )
    load_shape_spike_spawn_rate: float = Field(
        default=16.0,
        gt=0,
        description="shape: users started (stopped) per second into (out of) the spike",
    )
    load_shape_recovery_seconds: float = Field(
        default=30.0, ge=0, description="shape: time back at the steady users after the spike"
    )
    load_results_dir: Path = Field(
        default=REPO_ROOT / "results" / "locust",
        description="each headless run writes Locust's CSV and HTML report in a <UTC time> "
        "folder here",
    )
    load_stop_timeout_seconds: int = Field(
        default=5, ge=0, description="how long a stopping Locust user may finish its request"
    )

    @model_validator(mode="after")
    def _check(self) -> LoadSettings:
        if (
            self.load_candidates_max is not None
            and self.load_candidates_max < self.load_candidates_min
        ):
            raise ValueError(
                f"load_candidates_max {self.load_candidates_max} is below load_candidates_min "
                f"{self.load_candidates_min}"
            )
        if self.load_unknown_share + self.load_duplicate_share >= 1:
            raise ValueError("load_unknown_share + load_duplicate_share must stay below 1")
        return self

    def catalogue(self) -> np.ndarray:
        """[N] int64 item ids of the bundle's catalogue."""
        path = self.load_bundle_dir / ITEM_IDS_FILE
        if not path.is_file():
            raise FileNotFoundError(
                f"{path}: no catalogue to draw candidates from (set PRERANK_LOAD_BUNDLE_DIR to a "
                "bundle directory, e.g. artifacts/bundles/current after `make train`)"
            )
        return np.load(path, allow_pickle=False).astype(np.int64)

    def feature_schema_fingerprint(self) -> str:
        """The feature store the bundle's model reads its records from."""
        return read_manifest(self.load_bundle_dir).feature_store


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
    stack_events_metrics_port: int = Field(
        default=9101,
        ge=1,
        le=65535,
        description="metrics port of the event consumer (python -m offline_jobs.events) it runs",
    )
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
