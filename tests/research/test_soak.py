"""The 60-second soak (`make soak` runs 10 minutes): Locust against a real service with a hot swap
at half time; 0 errors, RSS of the service within 5% after warm-up, and the report printed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import redis

from tests.conftest import REDIS_URL, REPO_ROOT, TEST_MIN_AUC, delete_prefix

SOAK_SECONDS = 60


def test_a_one_minute_soak_holds_its_limits(fit_bundle, tmp_path: Path) -> None:
    prefix = f"soak-test-{uuid.uuid4().hex[:8]}:"
    report_path = tmp_path / "soak.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PRERANK_")}
    env |= {
        "PRERANK_REDIS_URL": REDIS_URL,
        "PRERANK_SOAK_KEY_PREFIX": prefix,
        "PRERANK_GATE__MIN_AUC": str(TEST_MIN_AUC),
        "PRERANK_SOAK_USERS": "4",
        "PRERANK_LOAD_CANDIDATES": "200",
    }
    try:
        result = subprocess.run(
            [
                *(sys.executable, "-m", "research.soak", "--seconds", str(SOAK_SECONDS)),
                *("--bundle", str(fit_bundle.path), "--report", str(report_path)),
            ],
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=SOAK_SECONDS * 4,
        )
    finally:
        with redis.Redis.from_url(REDIS_URL) as client:
            delete_prefix(client, prefix)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    report = json.loads(report_path.read_text())
    assert report["errors"] == 0 and report["service_errors"] == 0, report
    assert report["requests"] > SOAK_SECONDS * 10  # load really flowed
    assert report["swapped_to"] is not None and report["swapped_to"].endswith("-b")
    assert report["rss_growth"] and all(g <= 0.05 for g in report["rss_growth"].values())
    assert report["p99_first_ms"] > 0 and report["p99_last_ms"] > 0
    for figure in ("errors", "p99", "drift", "RSS"):
        assert figure in result.stdout, result.stdout
