"""Two stateless replicas on different ports, one Redis: a publish reaches both, each converging
on the new version within its poll interval plus the load (verify, gate, warm-up), and from then
on both answer the same request with the same scores."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import httpx

from prerank_contract.keys import RedisKeys
from tests.conftest import clone_bundle, publish_test_bundle, start_service

POLL_SECONDS = 0.5
CONVERGE_TIMEOUT = 30.0
CHECK_SECONDS = 0.02
LOAD_ALLOWANCE_SECONDS = 3.0  # one tiny version fetched, verified, gated and warmed


def version_of(url: str) -> str | None:
    return httpx.get(f"{url}/readyz", timeout=10).json().get("version")


def test_both_replicas_converge_on_a_publish(
    redis_client, fit_bundle, tiny_data, tmp_path: Path
) -> None:
    keys = RedisKeys(f"replicas-{uuid.uuid4().hex[:8]}:")
    first = clone_bundle(fit_bundle.path, tmp_path, "v1")
    second = clone_bundle(fit_bundle.path, tmp_path, "v2", heads_scale=1.5)
    publish_test_bundle(redis_client, keys, first, users=tiny_data)
    env = {
        "PRERANK_REDIS_KEY_PREFIX": keys.prefix,
        "PRERANK_POLL_INTERVAL_SECONDS": str(POLL_SECONDS),
    }
    replicas = [start_service(env, tmp_path / f"replica-{i}.log") for i in (1, 2)]
    try:
        assert [version_of(r.url) for r in replicas] == ["v1", "v1"]
        published = time.monotonic()
        publish_test_bundle(redis_client, keys, second)
        converged: dict[str, float] = {}
        while len(converged) < len(replicas) and time.monotonic() - published < CONVERGE_TIMEOUT:
            for replica in replicas:
                if replica.url not in converged and version_of(replica.url) == "v2":
                    converged[replica.url] = time.monotonic() - published
            time.sleep(CHECK_SECONDS)
        body = {
            "user_id": int(tiny_data.user_ids[0]),
            "candidates": tiny_data.catalogue[:60].tolist(),
        }
        answers = [httpx.post(f"{r.url}/prerank", json=body, timeout=30).json() for r in replicas]
    finally:
        for replica in replicas:
            replica.stop()
        written = list(redis_client.scan_iter(match=f"{keys.prefix}*", count=1000))
        if written:
            redis_client.delete(*written)
    assert len(converged) == 2, (converged, [r.log() for r in replicas])
    # within a poll interval plus one version's load and warm-up
    assert max(converged.values()) < POLL_SECONDS + LOAD_ALLOWANCE_SECONDS, converged
    assert [a["model_version"] for a in answers] == ["v2", "v2"]
    assert answers[0]["items"] == answers[1]["items"]  # same version, same scores
