"""API keys against a real service: /prerank, /clusters and /metrics answer only a valid key,
every refusal is the same 401; /healthz stays open and /readyz shows its detail only with a key;
the OpenAPI document declares the scheme only when keys are on; operators hash keys with
`python -m service hash-key`. (A digest setting that holds a key instead is refused without
echoing it: tests/prerank_contract/test_settings.py.)"""

from __future__ import annotations

import hashlib
import io
import json
import sys
from collections.abc import Iterator

import httpx
import pytest

from offline_jobs.data.dataset import InteractionData
from prerank_contract.settings import ENV_PREFIX
from research.service_process import ServiceProcess
from service.__main__ import main as service_cli
from service.app import create_app
from service.auth import MIN_KEY_CHARS
from service.settings import ServiceSettings
from tests.conftest import Bundle, start_service

KEYS = ("first-key-0123456789abcdefghij", "second-key-0123456789abcdefghij")
DIGESTS = [hashlib.sha256(key.encode()).hexdigest() for key in KEYS]
WRONG_KEY = "wrong-key-0123456789abcdefghij"
PROTECTED = ("/prerank", "/clusters", "/metrics")


@pytest.fixture(scope="module")
def keyed_service(
    fit_bundle: Bundle, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServiceProcess]:
    """The tiny FIT served from its bundle directory, with two API keys configured."""
    running = start_service(
        {
            f"{ENV_PREFIX}USE_REDIS": "false",
            f"{ENV_PREFIX}BUNDLE_DIR": str(fit_bundle.path),
            f"{ENV_PREFIX}API_KEY_HASHES": json.dumps(DIGESTS),
        },
        tmp_path_factory.mktemp("keyed-service") / "service.log",
    )
    yield running
    running.stop()


def call(
    service: ServiceProcess, path: str, data: InteractionData, authorization: str | None
) -> httpx.Response:
    """The route at `path` as a client calls it (a valid body for /prerank)."""
    headers = {} if authorization is None else {"Authorization": authorization}
    if path == "/prerank":
        body = {"user_id": 1, "candidates": data.catalogue[:20].tolist()}
        return httpx.post(f"{service.url}{path}", json=body, headers=headers, timeout=30)
    return httpx.get(f"{service.url}{path}", headers=headers, timeout=30)


@pytest.mark.parametrize("path", PROTECTED)
def test_a_protected_route_answers_a_valid_key_only(
    path: str, keyed_service: ServiceProcess, tiny_data: InteractionData
) -> None:
    refused = [
        call(keyed_service, path, tiny_data, authorization)
        for authorization in (
            None,  # no key
            f"Bearer {WRONG_KEY}",
            f"Basic {KEYS[0]}",  # the right key, another scheme
            "Bearer",  # malformed: no key
            KEYS[0],  # malformed: no scheme
            f"Bearer {KEYS[0]}x",  # almost the right key
        )
    ]
    for response in refused:
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"
    assert len({response.content for response in refused}) == 1  # nothing tells them apart
    for key in KEYS:
        assert call(keyed_service, path, tiny_data, f"Bearer {key}").status_code == 200
    assert call(keyed_service, path, tiny_data, f"bearer {KEYS[1]}").status_code == 200


def test_healthz_stays_open(keyed_service: ServiceProcess) -> None:
    response = httpx.get(f"{keyed_service.url}/healthz", timeout=30)
    assert response.status_code == 200


def test_readyz_shows_its_detail_only_with_a_valid_key(
    keyed_service: ServiceProcess, fit_bundle: Bundle
) -> None:
    url = f"{keyed_service.url}/readyz"
    for headers in ({}, {"Authorization": f"Bearer {WRONG_KEY}"}):
        response = httpx.get(url, headers=headers, timeout=30)
        assert response.status_code == 200
        assert response.json() == {"ready": True}
    detail = httpx.get(url, headers={"Authorization": f"Bearer {KEYS[0]}"}, timeout=30)
    assert detail.status_code == 200
    assert detail.json()["ready"] is True
    assert detail.json()["version"] == fit_bundle.manifest.version


def openapi(settings: ServiceSettings) -> dict:
    return create_app(settings).openapi()


def test_the_openapi_document_declares_the_bearer_scheme_when_keys_are_on() -> None:
    document = openapi(ServiceSettings(api_key_hashes=DIGESTS))
    scheme = document["components"]["securitySchemes"]["api_key"]
    assert scheme["type"] == "http" and scheme["scheme"] == "bearer"
    paths = document["paths"]
    for path in PROTECTED:
        (operation,) = paths[path].values()
        assert operation["security"] == [{"api_key": []}]
        assert "401" in operation["responses"]
    for path in ("/healthz", "/readyz"):
        assert "security" not in paths[path]["get"]
    keyless = openapi(ServiceSettings())
    assert "securitySchemes" not in keyless.get("components", {})
    for path in PROTECTED:
        (operation,) = keyless["paths"][path].values()
        assert "security" not in operation and "401" not in operation["responses"]


def hash_key(
    key: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> tuple[int, str, str]:
    """`python -m service hash-key` with `key` on stdin: (exit status, stdout, stderr)."""
    monkeypatch.setattr(sys, "stdin", io.StringIO(key))
    status = service_cli(["hash-key"])
    output = capsys.readouterr()
    return status, output.out, output.err


def test_hash_key_prints_the_digest_the_settings_take(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, _ = hash_key(KEYS[0] + "\n", monkeypatch, capsys)
    assert status == 0
    assert out.strip() == DIGESTS[0]
    assert ServiceSettings(api_key_hashes=[out.strip()]).api_key_hashes == (DIGESTS[0],)


def test_hash_key_refuses_a_short_key_without_showing_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    key = "short-key"
    status, out, err = hash_key(key, monkeypatch, capsys)
    assert status == 2
    assert f"at least {MIN_KEY_CHARS} characters" in err
    assert key not in out + err
