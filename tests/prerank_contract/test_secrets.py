"""Secrets never shown: a URL's password masked, and whatever an entry point logs or dies with
masked too, in a real process whose settings hold the password."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from prerank_contract.secrets import MASK, mask_text, redact_url, url_secrets
from prerank_contract.settings import ENV_PREFIX
from tests.conftest import REPO_ROOT
from tests.prerank_contract.credentials import WAYS, credentials_env

PASSWORD = "S3cretPassw0rd"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://admin:S3cret@host:6379/0", "redis://admin:***@host:6379/0"),
        ("redis://:S3cret@host:6379/0", "redis://:***@host:6379/0"),
        ("rediss://admin:p%40ss@host/0", "rediss://admin:***@host/0"),
        ("redis://admin:p@ss@host:6379", "redis://admin:***@host:6379"),  # `@` not encoded
        ("redis://host:6379/0?password=S3cret&db=1", "redis://host:6379/0?password=***&db=1"),
        ("unix://:S3cret@/run/redis.sock?db=0", "unix://:***@/run/redis.sock?db=0"),
        ("redis://admin@host:6379/0", "redis://admin@host:6379/0"),
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
    ],
)
def test_a_url_is_shown_with_its_password_masked(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_a_url_carries_its_password_as_written_and_decoded() -> None:
    assert set(url_secrets("redis://admin:p%40ss@host/0")) == {"p%40ss", "p@ss"}
    assert url_secrets("redis://host/0?password=S3cret") == ("S3cret",)
    assert url_secrets("redis://admin@host/0") == ()


def test_text_is_masked_for_known_secrets_and_any_url_password() -> None:
    text = f"auth with {PASSWORD} failed; Redis at redis://u:other@h:1/0 and http://h:8000/x"
    masked = mask_text(text, [PASSWORD, ""])
    assert PASSWORD not in masked and "other" not in masked
    assert masked == f"auth with {MASK} failed; Redis at redis://u:{MASK}@h:1/0 and http://h:8000/x"


# An entry point as every one starts (settings loaded, logging configured) logs the secret (in
# $LEAKED, not a setting) every way a record can carry it, then dies of an exception naming it.
LEAKY_ENTRY_POINT = textwrap.dedent(
    """
    import logging, os
    from prerank_contract.settings import CommonSettings, configure_logging, load_settings
    load_settings(CommonSettings)
    configure_logging("INFO")
    log = logging.getLogger("leaky")
    secret = os.environ["LEAKED"]
    log.info("argument %s", secret)
    log.warning("formatted " + secret)
    try:
        raise ValueError("in a traceback: " + secret)
    except ValueError:
        log.exception("caught")
    log.info("stack %s", secret, stack_info=True)
    raise RuntimeError("uncaught: " + secret)
    """
)


@pytest.mark.parametrize("way", WAYS)
def test_an_entry_point_masks_its_secrets_in_logs_and_tracebacks(way: str, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith(ENV_PREFIX)}
    env |= credentials_env(way, "127.0.0.1:1", "admin", PASSWORD, tmp_path) | {"LEAKED": PASSWORD}
    result = subprocess.run(
        [sys.executable, "-c", LEAKY_ENTRY_POINT],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 1, output  # the uncaught exception
    for shown in ("argument ***", "formatted ***", "in a traceback: ***", "stack ***"):
        assert shown in output
    assert "uncaught: ***" in output
    assert PASSWORD not in output
