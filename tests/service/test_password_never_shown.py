"""The Redis password shows nowhere: a real service and the jobs' CLI, given it in the URL, as a
setting or in a file, against an absent Redis and against a redis-server that refuses it; /readyz,
/metrics, the service's log and the CLI's output still say what is wrong, with the URL masked."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from prerank_contract.settings import ENV_PREFIX
from research.service_process import free_port
from tests.conftest import REPO_ROOT, Bundle, PrivateRedis, start_service
from tests.prerank_contract.credentials import credentials_env
from tests.side_by_side import side_by_side

PASSWORD = "S3cretPassw0rd-never-shown"
USER = "admin"
# How the password is given, and the Redis it is given to: the URL way against both, the
# settings' own ways against the Redis that receives (and refuses) them.
CASES = [("url", "absent"), ("url", "refusing"), ("setting", "refusing"), ("file", "refusing")]
CLI_TIMEOUT_SECONDS = 300


@pytest.fixture(scope="module")
def refusing_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateRedis]:
    """A redis-server whose only user wants another password."""
    server = PrivateRedis(tmp_path_factory.mktemp("refusing-redis"), password="TheRightOne-42")
    server.start().close()
    yield server
    server.stop()


def redis_env(way: str, target: str, server: PrivateRedis, folder: Path) -> dict[str, str]:
    port = server.port if target == "refusing" else free_port()  # nothing listens on a free one
    return credentials_env(way, f"127.0.0.1:{port}", USER, PASSWORD, folder)


@pytest.mark.parametrize(("way", "target"), CASES)
def test_the_service_shows_the_password_nowhere(
    way: str, target: str, refusing_redis: PrivateRedis, tmp_path: Path
) -> None:
    env = redis_env(way, target, refusing_redis, tmp_path) | {
        f"{ENV_PREFIX}LOG_LEVEL": "debug",  # every line the service can write
        f"{ENV_PREFIX}POLL_INTERVAL_SECONDS": "0.1",
    }
    service = start_service(env, tmp_path / "service.log")
    try:
        readyz = httpx.get(f"{service.url}/readyz", timeout=30)
        metrics = httpx.get(f"{service.url}/metrics", timeout=30)
    finally:
        service.stop()
    log = service.log()
    assert readyz.status_code == 503
    reason = readyz.json()["reason"]
    assert "Redis at redis://" in reason and "not readable" in reason
    if way == "url":
        assert f"{USER}:***@127.0.0.1" in reason
    if target == "refusing":
        assert "invalid username-password pair" in reason
    assert "prerank_model_loads_total" in metrics.text
    assert "not ready: no model loaded" in log
    for output in (readyz.text, metrics.text, log):
        assert PASSWORD not in output


@pytest.mark.parametrize(("way", "target"), CASES)
def test_the_jobs_show_the_password_nowhere(
    way: str, target: str, refusing_redis: PrivateRedis, fit_bundle: Bundle, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith(ENV_PREFIX)}
    env |= redis_env(way, target, refusing_redis, tmp_path)
    env[f"{ENV_PREFIX}ARTIFACTS_DIR"] = str(tmp_path / "artifacts")

    def job(*command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "offline_jobs", *command],
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=CLI_TIMEOUT_SECONDS,
        )

    for result in side_by_side(
        lambda: job("versions"), lambda: job("publish", str(fit_bundle.path))
    ):
        output = result.stdout + result.stderr
        assert result.returncode == 2, output
        assert "Redis at redis://" in output and "not reachable" in output
        if way == "url":
            assert f"{USER}:***@127.0.0.1" in output
        assert PASSWORD not in output
