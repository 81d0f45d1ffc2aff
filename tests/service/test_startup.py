"""Where the service loads its model from, and refusing what it must not serve."""

from __future__ import annotations

import gc
import shutil
from pathlib import Path

import anyio
import httpx
import pytest

from service.app import create_app
from service.settings import ServiceSettings
from tests.conftest import start_service

NO_REDIS = "redis://127.0.0.1:1/0"


def test_serves_the_local_bundle_when_redis_is_unreachable(fit_bundle, tmp_path: Path, tiny_data):
    service = start_service(
        {"PRERANK_REDIS_URL": NO_REDIS, "PRERANK_BUNDLE_DIR": str(fit_bundle.path)},
        tmp_path / "log",
    )
    try:
        ready = httpx.get(f"{service.url}/readyz").json()
        assert ready["ready"] is True
        assert ready["source"] == str(fit_bundle.path.resolve())
        body = httpx.post(
            f"{service.url}/prerank",
            json={"user_id": 1, "candidates": tiny_data.catalogue[:20].tolist()},
        ).json()
        assert len(body["items"]) == 20
        assert body["degraded"] is True  # no feature store without Redis: said, not hidden
    finally:
        service.stop()


def test_a_deployment_without_redis_answers_undegraded(fit_bundle, tmp_path: Path, tiny_data):
    service = start_service(
        {"PRERANK_USE_REDIS": "false", "PRERANK_BUNDLE_DIR": str(fit_bundle.path)},
        tmp_path / "log",
    )
    try:
        assert httpx.get(f"{service.url}/readyz").json()["degraded"] == {}
        candidates = tiny_data.catalogue[:20].tolist()
        history = tiny_data.catalogue[20:25].tolist()
        cold, given = (
            httpx.post(
                f"{service.url}/prerank", json={"user_id": 1, "candidates": candidates, **extra}
            )
            .raise_for_status()
            .json()
            for extra in ({}, {"history": history})
        )
    finally:
        service.stop()
    # no feature store by configuration: nothing failed, so nothing is flagged
    assert (cold["user_source"], cold["cold_start"], cold["degraded"]) == (
        "cold_start",
        True,
        False,
    )
    assert (given["user_source"], given["degraded"]) == ("request", False)


def test_not_ready_with_a_reason_when_there_is_no_model(tmp_path: Path):
    service = start_service({"PRERANK_REDIS_URL": NO_REDIS}, tmp_path / "log")
    try:
        response = httpx.get(f"{service.url}/readyz")
        assert response.status_code == 503
        assert "PRERANK_BUNDLE_DIR" in response.json()["reason"]
        assert (
            httpx.post(f"{service.url}/prerank", json={"user_id": 1, "candidates": [1]}).status_code
            == 503
        )
    finally:
        service.stop()


def test_a_corrupted_bundle_is_refused_naming_the_file(fit_bundle, tmp_path: Path):
    bundle = Path(shutil.copytree(fit_bundle.path, tmp_path / "bundle"))
    (bundle / "user_tower.onnx").write_bytes(b"not a graph")
    service = start_service(
        {"PRERANK_REDIS_URL": NO_REDIS, "PRERANK_BUNDLE_DIR": str(bundle)}, tmp_path / "log"
    )
    try:
        response = httpx.get(f"{service.url}/readyz")
        assert response.status_code == 503
        assert "user_tower.onnx" in response.json()["reason"]
    finally:
        service.stop()


@pytest.mark.parametrize("freeze", [True, False])
def test_start_up_freezes_what_it_leaves_alive_only_when_asked(fit_bundle, freeze: bool) -> None:
    """gc.freeze after start-up: full collections then skip the ~10^5 objects start-up leaves
    (tens of ms per collection otherwise; docs/ARCHITECTURE.md has the measurement)."""
    settings = ServiceSettings(
        use_redis=False, bundle_dir=fit_bundle.path, gc_freeze=freeze, poll_interval_seconds=0
    )
    app = create_app(settings)

    async def start_up() -> tuple[bool, int]:
        async with app.router.lifespan_context(app):  # load, warm up, freeze; then shut down
            return app.state.prerank.serving is not None, gc.get_freeze_count()

    gc.unfreeze()
    try:
        serving, frozen = anyio.run(start_up)
    finally:
        gc.unfreeze()
    assert serving
    assert (frozen > 0) is freeze, frozen
