"""TLS to Redis, on a real redis-server serving TLS only with certificates the test makes with
openssl: publish and serve over rediss:// (the client presenting its certificate, as the server
requires), on a single server and on a Redis Cluster whose users are docker/redis/users.acl's.
A CA that does not verify the server stops the jobs (the CLI exits 2) and leaves the service not
ready, all saying "TLS verification failed"; bad TLS settings are named before any connection."""

from __future__ import annotations

import re
import secrets
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from pydantic import SecretStr, ValidationError

from docker.redis.acl import PUBLISHER_USER, SERVICE_USER
from offline_jobs.release.commands import publish_feature_store, publish_version
from offline_jobs.settings import JobSettings
from prerank_contract.keys import RedisKeys
from prerank_contract.redis_client import (
    LazyClusterClient,
    TLSFiles,
    TLSSetupError,
)
from prerank_contract.settings import CommonSettings
from research.service_process import ServiceProcess
from tests.conftest import (
    REPO_ROOT,
    PrivateCluster,
    PrivateRedis,
    clone_bundle,
    job_env,
    start_service,
    tiny_settings,
    wait_for,
)
from tests.service.acl_users import ADMIN_USER, acl_with_admin, new_passwords

KEYS = RedisKeys()  # users.acl is written for the default prefix; each server is the test's own
POLL_SECONDS = 0.2
CLI_TIMEOUT_SECONDS = 120.0  # the jobs' CLI imports torch before it connects: slow on 2 cores
CANDIDATES = 50
REQUESTS = 3  # known users, asked in turn: later reads may reuse the store's TLS connection
CERTIFICATE_DAYS = "2"  # the test's certificates outlive any run of the suite
VERIFICATION_FAILED = "TLS verification failed"
# What the server's certificate names: how the tests (and a cluster's nodes) reach it.
SERVER_NAMES = "subjectAltName=IP:127.0.0.1,DNS:localhost"
LEAF_EXTENSIONS = (
    f"{SERVER_NAMES}\n"
    "basicConstraints=critical,CA:FALSE\n"
    "subjectKeyIdentifier=hash\n"
    "authorityKeyIdentifier=keyid,issuer\n"
)


@dataclass(frozen=True)
class Certificates:
    """A test CA, the server's and a client's certificate it signed, and a CA that signed
    neither (a wrong CA)."""

    server: TLSFiles  # the server's certificate and key, and the CA that verifies clients
    client: TLSFiles  # what a client trusts and presents
    other_ca: Path


def openssl(*args: str | Path) -> None:
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True)


def new_key(path: Path) -> Path:
    openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", path)
    return path


def new_ca(folder: Path, name: str) -> tuple[Path, Path]:
    """A self-signed CA: (certificate, key)."""
    key = new_key(folder / f"{name}.key")
    certificate = folder / f"{name}.crt"
    openssl(
        *("req", "-x509", "-new", "-key", key, "-subj", f"/CN={name}", "-days", CERTIFICATE_DAYS),
        *("-addext", "basicConstraints=critical,CA:TRUE"),
        *("-addext", "keyUsage=critical,keyCertSign,cRLSign", "-out", certificate),
    )
    return certificate, key


def new_leaf(folder: Path, name: str, ca: tuple[Path, Path]) -> tuple[Path, Path]:
    """A certificate `ca` signed, naming the loopback address: (certificate, key)."""
    key = new_key(folder / f"{name}.key")
    request, certificate = folder / f"{name}.csr", folder / f"{name}.crt"
    extensions = folder / f"{name}.ext"
    extensions.write_text(LEAF_EXTENSIONS)
    openssl("req", "-new", "-key", key, "-subj", f"/CN={name}", "-out", request)
    openssl(
        *("x509", "-req", "-in", request, "-CA", ca[0], "-CAkey", ca[1]),
        *("-set_serial", str(secrets.randbits(63)), "-days", CERTIFICATE_DAYS),
        *("-extfile", extensions, "-out", certificate),
    )
    return certificate, key


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    folder = tmp_path_factory.mktemp("tls")
    ca = new_ca(folder, "prerank-test-ca")
    server, client = new_leaf(folder, "redis", ca), new_leaf(folder, "client", ca)
    other_ca, _ = new_ca(folder, "other-ca")
    return Certificates(
        server=TLSFiles(ca[0], *server),
        client=TLSFiles(ca[0], *client),
        other_ca=other_ca,
    )


@pytest.fixture
def tls_redis(tmp_path: Path, certificates: Certificates) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path, tls=certificates.server)
    server.start().close()
    yield server
    server.stop()


def tls_settings(tls: TLSFiles) -> dict[str, Any]:
    """The settings fields that give a client `tls`."""
    return {
        "redis_tls_ca_file": tls.ca_file,
        "redis_tls_cert_file": tls.cert_file,
        "redis_tls_key_file": tls.key_file,
    }


def tls_env(tls: TLSFiles) -> dict[str, str]:
    return {f"PRERANK_{name.upper()}": str(path) for name, path in tls_settings(tls).items()}


def readiness(service: ServiceProcess) -> dict[str, Any]:
    answer: dict[str, Any] = httpx.get(f"{service.url}/readyz", timeout=10).json()
    return answer


def serve_and_answer(
    env: dict[str, str], version: str, tiny_data, log_path: Path
) -> tuple[list[dict[str, Any]], str]:
    """Start the service with `env`, wait until it serves `version`; (its /prerank answers for
    known users, its log)."""
    service = start_service({"PRERANK_POLL_INTERVAL_SECONDS": str(POLL_SECONDS), **env}, log_path)
    body = {"candidates": tiny_data.catalogue[:CANDIDATES].tolist()}
    try:
        wait_for(lambda: readiness(service).get("version") == version, version, service.log)
        answers = [
            httpx.post(f"{service.url}/prerank", json=body | {"user_id": user}, timeout=30).json()
            for user in tiny_data.user_ids[:REQUESTS].tolist()
        ]
    finally:
        service.stop()
    return answers, service.log()


def publish_tiny(job: JobSettings, client: Any, fit_bundle, tiny_data, folder: Path) -> str:
    """Publish the tiny FIT (as version v1) and its users' records; the version."""
    bundle = clone_bundle(fit_bundle.path, folder, "v1")
    publish_feature_store(job, client, tiny_data, "v1", progress=False)
    publish_version(job, client, bundle, progress=False)
    return "v1"


def test_tls_settings_need_rediss_a_key_with_the_certificate_and_files_that_load(
    certificates: Certificates, tmp_path: Path
) -> None:
    client = tls_settings(certificates.client)
    not_pem = tmp_path / "not-a-certificate.pem"
    not_pem.write_text("not a certificate\n")
    refused = {
        "applies to a rediss:// redis_url only": {"redis_url": "redis://127.0.0.1:1/0", **client},
        "give both or neither": {
            "redis_url": "rediss://127.0.0.1:1/0",
            "redis_tls_key_file": certificates.client.key_file,
        },
        f"redis_tls_ca_file: {not_pem} does not load as CA certificates": {
            "redis_url": "rediss://127.0.0.1:1/0",
            **client,
            "redis_tls_ca_file": not_pem,
        },
        "redis_tls_cert_file": {  # the client's certificate with the server's key
            "redis_url": "rediss://127.0.0.1:1/0",
            **client,
            "redis_tls_key_file": certificates.server.key_file,
        },
        "No such file or directory": {
            "redis_url": "rediss://127.0.0.1:1/0",
            "redis_tls_ca_file": tmp_path / "absent.pem",
        },
    }
    for expected, values in refused.items():
        with pytest.raises(ValidationError, match=re.escape(expected)):
            CommonSettings(**values)
    accepted = CommonSettings(redis_url="rediss://127.0.0.1:1/0", **client)
    assert accepted.redis_tls() == certificates.client
    assert CommonSettings(redis_url="redis://127.0.0.1:1/0").redis_tls() is None


def test_publish_and_serve_over_tls(
    tls_redis: PrivateRedis, certificates: Certificates, fit_bundle, tiny_data, tmp_path: Path
) -> None:
    job = tiny_settings(tmp_path / "artifacts", KEYS.prefix).model_copy(
        update={"redis_url": tls_redis.url, **tls_settings(certificates.client)}
    )
    client = job.connect_redis()
    try:
        version = publish_tiny(job, client, fit_bundle, tiny_data, tmp_path / "bundles")
    finally:
        client.close()
    answers, log = serve_and_answer(
        {"PRERANK_REDIS_URL": tls_redis.url, **tls_env(certificates.client)},
        version,
        tiny_data,
        tmp_path / "service.log",
    )
    assert [a["model_version"] for a in answers] == [version] * REQUESTS, log
    assert all(a["user_source"] == "feature_store" and not a["degraded"] for a in answers), answers
    # what the server takes: TLS only, and a client that presents a certificate its CA signed
    plain = CommonSettings(redis_url=tls_redis.url.replace("rediss://", "redis://"))
    with pytest.raises(redis.ConnectionError):
        plain.connect_redis()
    anonymous = CommonSettings(
        redis_url=tls_redis.url, redis_tls_ca_file=certificates.client.ca_file
    )
    with pytest.raises(TLSSetupError, match=r"TLS handshake with Redis at \S+ failed"):
        anonymous.connect_redis()


def test_a_wrong_ca_stops_the_jobs_and_leaves_the_service_not_ready_saying_so(
    tls_redis: PrivateRedis, certificates: Certificates, tmp_path: Path
) -> None:
    wrong = TLSFiles(
        certificates.other_ca, certificates.client.cert_file, certificates.client.key_file
    )
    job = tiny_settings(tmp_path / "artifacts", KEYS.prefix).model_copy(
        update={"redis_url": tls_redis.url, **tls_settings(wrong)}
    )
    with pytest.raises(TLSSetupError, match=VERIFICATION_FAILED):
        job.connect_redis()
    versions = subprocess.run(
        [sys.executable, "-m", "offline_jobs", "versions"],
        cwd=REPO_ROOT,
        env=job_env(job),
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_SECONDS,
    )
    assert versions.returncode == 2, versions.stderr
    assert f"error: {VERIFICATION_FAILED}" in versions.stderr
    service = start_service(
        {"PRERANK_REDIS_URL": tls_redis.url, **tls_env(wrong)}, tmp_path / "service.log"
    )
    try:
        ready = httpx.get(f"{service.url}/readyz", timeout=10)
    finally:
        service.stop()
    assert ready.status_code == 503
    assert VERIFICATION_FAILED in ready.json()["reason"], ready.json()
    assert VERIFICATION_FAILED in service.log()


@dataclass(frozen=True)
class AclCluster:
    cluster: PrivateCluster
    passwords: dict[str, str]  # of each role's user


@pytest.fixture
def tls_acl_cluster(tmp_path: Path, certificates: Certificates) -> Iterator[AclCluster]:
    """A 3-primary cluster serving TLS only (its bus too), its users docker/redis/users.acl's."""
    passwords = new_passwords()
    acl_file = tmp_path / "users.acl"
    acl_file.write_text(acl_with_admin(passwords))
    cluster = PrivateCluster(
        tmp_path / "cluster",
        acl_file=acl_file,
        username=ADMIN_USER,
        password=passwords[ADMIN_USER],
        tls=certificates.server,
    )
    cluster.start()
    yield AclCluster(cluster, passwords)
    cluster.stop()


def test_publish_and_serve_over_tls_on_a_cluster_with_the_role_users(
    tls_acl_cluster: AclCluster,
    certificates: Certificates,
    fit_bundle,
    tiny_data,
    tmp_path: Path,
) -> None:
    cluster, passwords = tls_acl_cluster.cluster, tls_acl_cluster.passwords
    job = tiny_settings(tmp_path / "artifacts", KEYS.prefix).model_copy(
        update={
            "redis_url": cluster.url,
            "redis_cluster": True,
            "redis_username": PUBLISHER_USER,
            "redis_password": SecretStr(passwords[PUBLISHER_USER]),
            **tls_settings(certificates.client),
        }
    )
    client = job.connect_redis()
    assert isinstance(client, LazyClusterClient)
    try:
        version = publish_tiny(job, client, fit_bundle, tiny_data, tmp_path / "bundles")
    finally:
        client.close()
    password_file = tmp_path / "service-password"
    password_file.write_text(passwords[SERVICE_USER])
    answers, log = serve_and_answer(
        {
            "PRERANK_REDIS_URL": cluster.url,
            "PRERANK_REDIS_CLUSTER": "true",
            "PRERANK_REDIS_USERNAME": SERVICE_USER,
            "PRERANK_REDIS_PASSWORD_FILE": str(password_file),
            **tls_env(certificates.client),
        },
        version,
        tiny_data,
        tmp_path / "service.log",
    )
    assert [a["model_version"] for a in answers] == [version] * REQUESTS, log
    assert all(a["user_source"] == "feature_store" and not a["degraded"] for a in answers), answers
    nodes = cluster.node_clients()
    refused = [entry for node in nodes for entry in node.acl_log()]
    for node in nodes:
        node.close()
    assert refused == [], f"a role was refused a command it runs: {refused}"
    wrong_ca = job.model_copy(update={"redis_tls_ca_file": certificates.other_ca})
    with pytest.raises(TLSSetupError, match=VERIFICATION_FAILED):
        wrong_ca.connect_redis()
