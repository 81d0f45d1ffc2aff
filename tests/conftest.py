"""Shared builders: a tiny synthetic world, a trained tiny FIT, its bundle, the real Redis, and a
real uvicorn serving it. Session-scoped, so the suite trains and exports once."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import redis
import torch
from pydantic import SecretStr

from offline_jobs.bundling.assemble import build_bundle
from offline_jobs.bundling.fingerprint import config_fingerprint
from offline_jobs.bundling.writer import relabel_bundle
from offline_jobs.data.dataset import InteractionData
from offline_jobs.data.synthetic import SyntheticConfig, generate_synthetic
from offline_jobs.release.publish import PublishResult, publish_bundle, publish_user_features
from offline_jobs.settings import JobSettings
from offline_jobs.training.evaluate import evaluate
from offline_jobs.training.loop import TrainConfig, new_model, train_model
from prerank_contract.bundle import sha256_file
from prerank_contract.gate import GateConfig
from prerank_contract.keys import RedisKeys
from prerank_contract.manifest import ITEM_HEADS_FILE, MANIFEST_FILE, Manifest, ModelMetrics
from prerank_contract.redis_client import TLSFiles
from prerank_model.config import ModelConfig
from prerank_model.models.base import PrerankModel
from prerank_model.models.int_tower import IntTower
from research.service_process import ServiceProcess, free_port, is_alive

REPO_ROOT = Path(__file__).resolve().parent.parent
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")

TINY_WORLD = SyntheticConfig(
    seed=11,
    num_users=120,
    num_items=300,
    num_categories=6,
    brands_per_category=4,
    events_per_user=20,
    max_history=8,
)
TINY_MODEL = ModelConfig(
    embedding_dim=8,
    tower_hidden=(32,),
    head_dim=8,
    user_heads=3,
    item_heads=2,
    num_meta_queries=6,
    din_hidden=(16,),
    lss_row_dim=4,
    lss_col_dim=3,
)
TINY_TRAIN = TrainConfig(seed=5, epochs=2, batch_size=128, learning_rate=5e-3)
# Tiny models reach a test AUC near 0.58: the suite gates at chance level, and sets the same floor
# for the services it starts, so only a test that means to trip the gate does.
TEST_MIN_AUC = 0.5
TEST_GATE = GateConfig(min_auc=TEST_MIN_AUC)
TEST_CHUNK_BYTES = 4096  # small Redis values, so a tiny bundle's files span several keys
CLUSTER_PRIMARIES = 3
MAX_PORT = 65535


@dataclass(frozen=True)
class Bundle:
    path: Path
    manifest: Manifest


def tiny_settings(artifacts_dir: Path, key_prefix: str) -> JobSettings:
    return JobSettings(
        artifacts_dir=artifacts_dir,
        synthetic=TINY_WORLD,
        model=TINY_MODEL,
        train=TINY_TRAIN,
        redis_url=REDIS_URL,
        redis_key_prefix=key_prefix,
        parity_users=16,
        publish_chunk_bytes=TEST_CHUNK_BYTES,
        gate=TEST_GATE,
    )


WAIT_SECONDS = 30.0  # deadline of a wait for a state that must come: reaching it is a failure
PROBE_SECONDS = 0.05  # between probes while waiting


def wait_for(
    condition: Callable[[], object], what: str, log: Callable[[], str] | None = None
) -> Any:
    """Poll `condition` until it returns something true, and return that; past `WAIT_SECONDS`
    fail naming `what` (and showing `log()`, e.g. a service's log, when given)."""
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(PROBE_SECONDS)
    raise AssertionError(f"timed out waiting for {what}" + ("" if log is None else f":\n{log()}"))


def job_env(settings: JobSettings) -> dict[str, str]:
    """The environment that gives `python -m offline_jobs` these settings: every PRERANK_* var
    of this process dropped, every field that differs from its default set (nested as JSON)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PRERANK_")}
    for name, value in settings.model_dump(mode="json", exclude_defaults=True).items():
        secret = getattr(settings, name)
        if isinstance(secret, SecretStr):  # dumped masked: the child needs the value itself
            value = secret.get_secret_value()
        env[f"PRERANK_{name.upper()}"] = value if isinstance(value, str) else json.dumps(value)
    return env


@pytest.fixture(scope="session")
def key_prefix() -> str:
    """A fresh key prefix per test session: the suite never touches another run's keys."""
    return f"prerank-test-{uuid.uuid4().hex[:8]}:"


@pytest.fixture(scope="session")
def job_settings(tmp_path_factory: pytest.TempPathFactory, key_prefix: str) -> JobSettings:
    return tiny_settings(tmp_path_factory.mktemp("artifacts"), key_prefix)


@pytest.fixture(scope="session")
def tiny_data(job_settings: JobSettings) -> InteractionData:
    return generate_synthetic(job_settings.synthetic, progress=False)


def train_tiny(name: str, data: InteractionData, settings: JobSettings) -> PrerankModel:
    torch.set_num_threads(settings.torch_threads)
    model = new_model(name, data.schema, settings.model, settings.train.seed)
    train_model(model, data, settings.train, progress=False)
    return model


def eval_scores(
    model: PrerankModel, data: InteractionData, user: int, items: np.ndarray
) -> np.ndarray:
    """What /prerank should answer: sigmoid of `model`'s eval-mode forward for `user` (its
    feature-store record: profile and latest history) and each of `items` [N] -> [N]."""
    history = data.item_features[data.latest_histories[user]]
    with torch.no_grad():
        logits = model.eval()(
            torch.from_numpy(np.repeat(data.user_features[user][None], items.size, 0)),
            torch.from_numpy(np.repeat(history[None], items.size, 0)),
            torch.from_numpy(data.item_features[items]),
        )
    return torch.sigmoid(logits).numpy()


@pytest.fixture(scope="session")
def trained_fit(tiny_data: InteractionData, job_settings: JobSettings) -> PrerankModel:
    return train_tiny("fit", tiny_data, job_settings)


def make_bundle(model: PrerankModel, data: InteractionData, settings: JobSettings) -> Bundle:
    metrics = ModelMetrics(splits=evaluate(model, data, 4096), train_seconds=0.0, epochs=1)
    fingerprint = config_fingerprint(settings, model.name, data.fingerprint())
    path, manifest = build_bundle(model, metrics, {}, data, settings, fingerprint)
    return Bundle(path, manifest)


@pytest.fixture(scope="session")
def fit_bundle(
    trained_fit: PrerankModel, tiny_data: InteractionData, job_settings: JobSettings
) -> Bundle:
    return make_bundle(trained_fit, tiny_data, job_settings)


@pytest.fixture(scope="session")
def redis_client(key_prefix: str) -> Iterator[redis.Redis]:
    """The machine's real Redis; every key this session wrote is deleted afterwards."""
    client = redis.Redis.from_url(REDIS_URL)
    client.ping()
    yield client
    delete_prefix(client, key_prefix)
    client.close()


@pytest.fixture(scope="session")
def published_fit(
    redis_client: redis.Redis,
    fit_bundle: Bundle,
    tiny_data: InteractionData,
    job_settings: JobSettings,
) -> Bundle:
    publish_test_bundle(redis_client, job_settings.keys, fit_bundle.path, users=tiny_data)
    return fit_bundle


# publish's own default: keys of a publish left unfinished are collected after this long
ORPHAN_MIN_IDLE_SECONDS = JobSettings.model_fields["publish_orphan_min_idle_seconds"].default


def publish_test_bundle(
    client: redis.Redis,
    keys: RedisKeys,
    path: Path,
    users: InteractionData | None = None,
    **options: Any,
) -> PublishResult:
    """Publish a test bundle as the tests do (`TEST_CHUNK_BYTES` chunks, the test gate); with
    `users`, their feature-store records too. `options` override publish_bundle's."""
    if users is not None:
        publish_user_features(client, keys, users, 100, progress=False)
    defaults: dict[str, Any] = {
        "chunk_bytes": TEST_CHUNK_BYTES,
        "keep_versions": 3,
        "gate": TEST_GATE,
        "orphan_min_idle_seconds": ORPHAN_MIN_IDLE_SECONDS,
        "progress": False,
    }
    return publish_bundle(client, keys, path, **(defaults | options))


# What every service a test starts is given: the gate at the test floor, quiet logs, no drain
# (tests of the drain set their own).
SERVICE_TEST_ENV = {
    "PRERANK_GATE__MIN_AUC": str(TEST_MIN_AUC),
    "PRERANK_LOG_LEVEL": "warning",
    "PRERANK_SHUTDOWN_DRAIN_SECONDS": "0",
}
SERVICE_START_TIMEOUT_SECONDS = 60.0


def start_service(env_overrides: Mapping[str, str], log_path: Path) -> ServiceProcess:
    """`python -m service` as its own process (a real uvicorn) on the test Redis, configured by
    PRERANK_* env; returned once /healthz answers, ready or not (tests of a refused model start
    one that never is). `.stop()` stops it."""
    env = {
        "PRERANK_REDIS_URL": REDIS_URL,
        **SERVICE_TEST_ENV,
        # exact-score tests run under load on 2 cores: deadline tests send the header
        "PRERANK_DEADLINE_MS": "60000",
        **env_overrides,
    }
    service = ServiceProcess.from_env(
        env, log_path, ready=is_alive, start_timeout_seconds=SERVICE_START_TIMEOUT_SECONDS
    )
    return service.start()


@pytest.fixture(scope="session")
def service(
    published_fit: Bundle, key_prefix: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServiceProcess]:
    """A real uvicorn serving the published tiny FIT from the real Redis."""
    running = start_service(
        {"PRERANK_REDIS_KEY_PREFIX": key_prefix, "PRERANK_MAX_CANDIDATES": "500"},
        tmp_path_factory.mktemp("service") / "service.log",
    )
    yield running
    running.stop()


def clone_bundle(
    source: Path,
    bundles_dir: Path,
    version: str,
    *,
    heads_scale: float | None = None,
    edit: Callable[[dict[str, Any]], None] | None = None,
) -> Path:
    """A copy of a bundle under a new version id. `heads_scale` multiplies the item heads (so the
    copy scores differently; checksums updated); `edit` changes the manifest dict in place."""
    target, _ = relabel_bundle(source, bundles_dir, version)
    manifest = json.loads((target / MANIFEST_FILE).read_text())
    if heads_scale is not None:
        heads_path = target / ITEM_HEADS_FILE
        np.save(heads_path, np.load(heads_path) * np.float32(heads_scale))
        manifest["files"][ITEM_HEADS_FILE] = {
            "sha256": sha256_file(heads_path),
            "bytes": heads_path.stat().st_size,
        }
    if edit is not None:
        edit(manifest)
    (target / MANIFEST_FILE).write_text(json.dumps(manifest))
    return target


REDIS_START_TIMEOUT_SECONDS = 20.0
CLUSTER_START_TIMEOUT_SECONDS = 30.0
REDIS_POLL_SECONDS = 0.05


def spawn_redis_server(port: int, folder: Path, *options: str) -> subprocess.Popen[bytes]:
    """A redis-server on loopback `port` keeping its files in `folder`, without RDB snapshots;
    `options` are more of its command-line settings."""
    return subprocess.Popen(
        [
            *("redis-server", "--port", str(port), "--bind", "127.0.0.1"),
            *("--save", "", "--dir", str(folder), *options),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def wait_for_redis(
    ready: Callable[[], bool], deadline: float, what: str, give_up: Callable[[], None]
) -> None:
    """Poll `ready` (a refused connection counts as not yet) until it holds; past `deadline`,
    `give_up` (stop what was started) and fail naming `what`."""
    while True:
        try:
            if ready():
                return
        except redis.ConnectionError:
            pass
        if time.monotonic() > deadline:
            give_up()
            raise RuntimeError(f"Redis: no {what}")
        time.sleep(REDIS_POLL_SECONDS)


def stop_processes(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        if process.poll() is None:
            process.terminate()
            process.wait(timeout=10)


def tls_server_options(port: int, tls: TLSFiles | None) -> list[str]:
    """redis-server options that serve TLS only, on `port`: `tls`'s certificate and key, and its
    CA, which must also have signed every client's certificate (required, Redis's default)."""
    if tls is None:
        return []
    return [
        *("--port", "0", "--tls-port", str(port)),
        *("--tls-cert-file", str(tls.cert_file), "--tls-key-file", str(tls.key_file)),
        *("--tls-ca-cert-file", str(tls.ca_file)),
    ]


def tls_client_options(tls: TLSFiles | None) -> dict[str, Any]:
    """redis-py options of a test's own client of a server started with `tls`: it trusts the CA
    and presents the server's own certificate (no key usage limits it to serving)."""
    if tls is None:
        return {}
    return {
        "ssl": True,
        "ssl_ca_certs": str(tls.ca_file),
        "ssl_certfile": str(tls.cert_file),
        "ssl_keyfile": str(tls.key_file),
    }


def delete_prefix(client: redis.Redis, prefix: str) -> None:
    """Delete every key under `prefix` (what a test wrote under a prefix of its own)."""
    doomed = list(client.scan_iter(match=f"{prefix}*", count=1000))
    if doomed:
        client.delete(*doomed)


class PrivateRedis:
    """A redis-server of the test's own on a loopback port; with `appendonly`, what it held
    survives stop() + start() (same port, same folder); with `password`, its default user
    requires it (`requirepass`), and `url` holds none. With `acl_file`, its users are that file's
    and its own client logs in as `username` with `password`; with `tls` (its certificate, key
    and CA), it serves TLS only and `url` is rediss://."""

    def __init__(
        self,
        folder: Path,
        port: int | None = None,
        appendonly: bool = False,
        password: str | None = None,
        acl_file: Path | None = None,
        username: str | None = None,
        tls: TLSFiles | None = None,
    ) -> None:
        self.folder, self.port, self.appendonly = folder, port or free_port(), appendonly
        self.password, self.acl_file, self.username, self.tls = password, acl_file, username, tls
        self.url = f"{'rediss' if tls else 'redis'}://127.0.0.1:{self.port}/0"
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(self) -> redis.Redis:
        """Start it; a client once it answers PING."""
        options = ["--appendonly", "yes" if self.appendonly else "no"]
        if self.acl_file is not None:
            options += ["--aclfile", str(self.acl_file)]
        elif self.password is not None:
            options += ["--requirepass", self.password]
        options += tls_server_options(self.port, self.tls)
        self.processes = [spawn_redis_server(self.port, self.folder, *options)]
        client = redis.Redis(
            host="127.0.0.1",
            port=self.port,
            username=self.username,
            password=self.password,
            **tls_client_options(self.tls),
        )
        deadline = time.monotonic() + REDIS_START_TIMEOUT_SECONDS
        wait_for_redis(lambda: bool(client.ping()), deadline, f"PING on {self.port}", self.stop)
        return client

    def stop(self) -> None:
        stop_processes(self.processes)


CLUSTER_BUS_OFFSET = 10000  # a cluster node also listens on its port + 10000 (the cluster bus)


def cluster_port() -> int:
    """A free loopback port whose cluster-bus port is free too."""
    while True:
        port = free_port()
        if port + CLUSTER_BUS_OFFSET > MAX_PORT:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port + CLUSTER_BUS_OFFSET))
            except OSError:
                continue
        return port


class PrivateCluster:
    """A Redis Cluster of the test's own: `primaries` redis-servers with cluster mode on, on free
    loopback ports, joined by `redis-cli --cluster create` (no replicas). With `acl_file` and
    `tls`, as `PrivateRedis` (the cluster bus speaks TLS too)."""

    def __init__(
        self,
        folder: Path,
        primaries: int = CLUSTER_PRIMARIES,
        acl_file: Path | None = None,
        username: str | None = None,
        password: str | None = None,
        tls: TLSFiles | None = None,
    ) -> None:
        self.folder = folder
        self.ports = [cluster_port() for _ in range(primaries)]
        self.acl_file, self.username, self.password, self.tls = acl_file, username, password, tls
        self.url = f"{'rediss' if tls else 'redis'}://127.0.0.1:{self.ports[0]}/0"
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(self) -> None:
        for port in self.ports:
            node_dir = self.folder / str(port)
            node_dir.mkdir(parents=True, exist_ok=True)
            self.processes.append(
                spawn_redis_server(
                    port,
                    node_dir,
                    *("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"),
                    *("--appendonly", "no"),
                    *self._node_options(port),
                )
            )
        deadline = time.monotonic() + CLUSTER_START_TIMEOUT_SECONDS
        wait_for_redis(
            lambda: all(self._info(port) is not None for port in self.ports),
            deadline,
            f"answer on ports {self.ports}",
            self.stop,
        )
        subprocess.run(
            [
                *("redis-cli", "--cluster", "create"),
                *(f"127.0.0.1:{port}" for port in self.ports),
                *("--cluster-replicas", "0", "--cluster-yes", *self._cli_options()),
            ],
            check=True,
            capture_output=True,
            timeout=CLUSTER_START_TIMEOUT_SECONDS,
            env=os.environ | ({} if self.password is None else {"REDISCLI_AUTH": self.password}),
        )
        # `create` returns before every node has seen the others: wait for each to say "ok"
        wait_for_redis(
            lambda: all(
                (self._info(port) or {}).get("cluster_state") == "ok" for port in self.ports
            ),
            deadline,
            f"cluster_state:ok on every node of {self.ports}",
            self.stop,
        )

    def _node_options(self, port: int) -> list[str]:
        """redis-server options of the node on `port` for `acl_file` and `tls`."""
        options = [] if self.acl_file is None else ["--aclfile", str(self.acl_file)]
        if self.tls is not None:
            options += [*tls_server_options(port, self.tls), "--tls-cluster", "yes"]
        return options

    def _cli_options(self) -> list[str]:
        """redis-cli options to reach the nodes (its password: REDISCLI_AUTH)."""
        options = [] if self.username is None else ["--user", self.username]
        if self.tls is not None:
            options += ["--tls", "--cacert", str(self.tls.ca_file)]
            options += ["--cert", str(self.tls.cert_file), "--key", str(self.tls.key_file)]
        return options

    def _node(self, port: int, **options: Any) -> redis.Redis:
        """A plain client of the node on `port`, logged in and over TLS as the cluster needs."""
        return redis.Redis(
            host="127.0.0.1",
            port=port,
            username=self.username,
            password=self.password,
            **tls_client_options(self.tls),
            **options,
        )

    def _info(self, port: int) -> dict[str, str] | None:
        """CLUSTER INFO of one node, on a new connection (a connection opened before the node
        joined the cluster kept reporting its old state); None while it does not answer."""
        with self._node(port, decode_responses=True) as node:
            try:
                info: dict[str, str] = node.cluster("info")
            except redis.ConnectionError:
                return None
            return info

    def node_clients(self) -> list[redis.Redis]:
        """One plain client per primary (to see which keys each node holds)."""
        return [self._node(port) for port in self.ports]

    def stop(self) -> None:
        stop_processes(self.processes)


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateCluster]:
    """A 3-primary Redis Cluster started for this session; skipped (with the reason) only where
    redis-server or redis-cli is not installed."""
    missing = [tool for tool in ("redis-server", "redis-cli") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"Redis Cluster tests need {' and '.join(missing)}, not installed here")
    cluster = PrivateCluster(tmp_path_factory.mktemp("redis-cluster"))
    cluster.start()
    yield cluster
    cluster.stop()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[redis.Redis]:
    """A private redis-server on a free loopback port, stopped after the test."""
    server = PrivateRedis(tmp_path)
    client = server.start()
    yield client
    client.close()
    server.stop()


# Two hidden layers: the layer-wise heads are exercised, and CIR must pick the deepest layer's.
INT_TOWER_LAYERS = (16, 8)


def layered_int_tower(data: InteractionData, settings: JobSettings) -> IntTower:
    """An IntTower of two hidden layers (seed 3), in eval mode."""
    config = settings.model.model_copy(update={"tower_hidden": INT_TOWER_LAYERS})
    model = new_model("inttower", data.schema, config, seed=3)
    assert isinstance(model, IntTower)
    return model.eval()
