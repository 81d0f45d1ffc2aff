"""The consumer's entry points: both start without torch, and a bad setting is a CLI error."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO_ROOT


def test_the_consumer_imports_no_torch() -> None:
    code = "import sys, offline_jobs.events.__main__; print('torch' in sys.modules)"
    found = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )
    assert found.stdout.strip() == "False"


def test_a_block_longer_than_the_socket_timeout_is_refused() -> None:
    env = {"PRERANK_EVENTS_BLOCK_MS": "5000", "PRERANK_REDIS_TIMEOUT_SECONDS": "2", "PATH": ""}
    run = subprocess.run(
        [sys.executable, "-m", "offline_jobs", "events"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert run.returncode == 2
    assert "events_block_ms (5000) must stay under redis_timeout_seconds" in run.stderr
