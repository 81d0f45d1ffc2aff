"""Entry points refuse a `PRERANK_*` variable no settings class reads, naming the closest known
one; variables of other classes of the project and nested fields pass."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from offline_jobs.settings import JobSettings
from prerank_contract.settings import (
    ENV_PREFIX,
    CommonSettings,
    closest_setting,
    known_setting_names,
    load_settings,
    setting_names,
)
from service.settings import ServiceSettings
from tests.conftest import REPO_ROOT, PrivateRedis
from tests.prerank_contract.credentials import WAYS, credentials_env

TYPO_HINT = "error: PRERANK_DEADLINE_MSS is not a setting (did you mean PRERANK_DEADLINE_MS?)"


@pytest.fixture(autouse=True)
def no_prerank_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test sets exactly the variables it is about."""
    for name in os.environ:
        if name.upper().startswith(ENV_PREFIX):
            monkeypatch.delenv(name)


def refusal(settings_class: type, capsys: pytest.CaptureFixture[str]) -> str:
    """What load_settings prints when it refuses to start (status 2)."""
    with pytest.raises(SystemExit) as exit_info:
        load_settings(settings_class)
    assert exit_info.value.code == 2
    return capsys.readouterr().err


def test_a_misspelt_variable_is_refused_naming_the_closest_setting(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PRERANK_DEADLINE_MSS", "5")
    assert TYPO_HINT in refusal(ServiceSettings, capsys)


def test_every_unknown_variable_is_named_at_once(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PRERANK_DEADLINE_MSS", "5")
    monkeypatch.setenv("PRERANK_XYZZY", "1")
    lines = refusal(ServiceSettings, capsys).splitlines()
    assert TYPO_HINT in lines
    assert "error: PRERANK_XYZZY is not a setting" in lines  # nothing close: no suggestion


def test_names_are_compared_case_insensitively_as_pydantic_settings_reads_them(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("prerank_deadline_ms", "5")
    assert load_settings(ServiceSettings).deadline_ms == 5.0
    monkeypatch.setenv("prerank_deadline_mss", "5")
    assert "error: prerank_deadline_mss is not a setting" in refusal(ServiceSettings, capsys)


def test_a_variable_of_another_settings_class_is_accepted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PRERANK_BENCH_REQUESTS", "5")  # the benchmark's, in research/
    monkeypatch.setenv("PRERANK_STACK_HOST", "127.0.0.1")  # the local stack's, in loadtest/
    monkeypatch.setenv("PRERANK_ARTIFACTS_DIR", "/tmp/elsewhere")  # the job's
    monkeypatch.setenv("PRERANK_PORT", "8123")
    assert load_settings(ServiceSettings).port == 8123


def test_nested_fields_are_known_at_any_depth(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PRERANK_GATE__MIN_AUC", "0.6")
    monkeypatch.setenv("PRERANK_TRAIN__EPOCHS", "1")
    monkeypatch.setenv("PRERANK_MODEL__TOWER_HIDDEN", "[64, 32]")
    settings = load_settings(JobSettings)
    assert settings.gate.min_auc == 0.6
    assert settings.train.epochs == 1
    assert settings.model.tower_hidden == (64, 32)


def test_a_misspelt_nested_field_is_refused(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PRERANK_MODEL__TOWER_HIDEN", "[64]")
    error = refusal(JobSettings, capsys)
    assert "(did you mean PRERANK_MODEL__TOWER_HIDDEN?)" in error


def test_the_known_names_hold_every_field_of_the_product_settings() -> None:
    known = known_setting_names()
    for settings_class in (ServiceSettings, JobSettings):
        assert set(setting_names(settings_class)) <= known
    assert {"PRERANK_GATE", "PRERANK_GATE__MIN_AUC", "PRERANK_MODEL__TOWER_HIDDEN"} <= known


def test_the_closest_name_ignores_the_shared_prefix() -> None:
    known = {"PRERANK_DEADLINE_MS", "PRERANK_PORT", "PRERANK_HOST"}
    assert closest_setting("PRERANK_PROT", known) == "PRERANK_PORT"
    assert closest_setting("PRERANK_SOMETHING_ELSE", known) is None


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith(ENV_PREFIX)}
    env["PRERANK_DEADLINE_MSS"] = "5"
    return subprocess.run(
        [sys.executable, "-m", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.parametrize("command", [("offline_jobs", "versions"), ("service",)])
def test_the_real_cli_refuses_a_misspelt_variable_before_doing_anything(
    command: tuple[str, ...],
) -> None:
    result = run_cli(*command)
    assert result.returncode == 2
    assert result.stdout == ""  # no versions listed, no server started
    assert TYPO_HINT in result.stderr.splitlines()
    assert "Uvicorn running" not in result.stderr


SECRET = "S3cretPassw0rd"


def password_file(folder: Path, content: str = SECRET + "\n") -> Path:
    path = folder / "redis_password"
    path.write_text(content)
    return path


@pytest.mark.parametrize(
    ("variables", "named"),
    [
        (
            {
                "PRERANK_REDIS_URL": f"redis://:{SECRET}@127.0.0.1:6379/0",
                "PRERANK_REDIS_PASSWORD": SECRET,
            },
            "redis_password: redis_url holds a password already",
        ),
        (
            {"PRERANK_REDIS_PASSWORD": SECRET, "PRERANK_REDIS_PASSWORD_FILE": "{file}"},
            "redis_password and redis_password_file: give one of them, not both",
        ),
        (
            {"PRERANK_REDIS_URL": "redis://admin@127.0.0.1:6379/0", "PRERANK_REDIS_USERNAME": "a"},
            "redis_username: redis_url names a user already",
        ),
        (
            {"PRERANK_REDIS_URL": f"redis://a:{SECRET}@h:1/3", "PRERANK_REDIS_CLUSTER": "true"},
            "a Redis Cluster has database 0 only, not 'redis://a:***@h:1/3'",
        ),
    ],
)
def test_a_credential_given_twice_is_refused_without_showing_it(
    variables: dict[str, str],
    named: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    for name, value in variables.items():
        monkeypatch.setenv(name, value.format(file=password_file(tmp_path)))
    error = refusal(JobSettings, capsys)
    assert named in error
    assert SECRET not in error


@pytest.mark.parametrize(
    ("content", "problem"),
    [(None, "cannot read {path} (FileNotFoundError)"), ("\n", "{path} is empty")],
)
def test_a_password_file_that_gives_no_password_is_refused_naming_it(
    content: str | None,
    problem: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    path = tmp_path / "redis_password"
    if content is not None:
        path.write_text(content)
    monkeypatch.setenv("PRERANK_REDIS_PASSWORD_FILE", str(path))
    assert f"redis_password_file: {problem.format(path=path)}" in refusal(ServiceSettings, capsys)


def test_an_invalid_value_is_echoed_unless_it_is_a_secret_field(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PRERANK_PORT", "eighty")
    monkeypatch.setenv("PRERANK_API_KEY_HASHES", f'["{SECRET}"]')  # a key where its digest goes
    error = refusal(ServiceSettings, capsys)
    assert "port: Input should be a valid integer" in error and "(given: 'eighty')" in error
    assert "api_key_hashes: Value error, entry 0 is not a sha256 hex digest" in error
    assert SECRET not in error


@pytest.fixture
def password_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    """A private redis-server whose default user requires SECRET."""
    server = PrivateRedis(tmp_path, password=SECRET)
    server.start().close()
    yield server
    server.stop()


@pytest.mark.parametrize("way", WAYS)
def test_the_client_authenticates_with_the_password_given_each_way(
    way: str, password_redis: PrivateRedis, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    address = f"127.0.0.1:{password_redis.port}"
    for name, value in credentials_env(way, address, "default", SECRET, tmp_path).items():
        monkeypatch.setenv(name, value)
    settings = CommonSettings()
    client = settings.connect_redis()
    assert client.ping()
    client.close()
    assert SECRET not in settings.redis_url_redacted
    for name, value in credentials_env(way, address, "default", "not-it", tmp_path).items():
        monkeypatch.setenv(name, value)
    with pytest.raises(redis.AuthenticationError):
        CommonSettings().connect_redis()
