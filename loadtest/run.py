"""``python -m loadtest.run`` (``make load``): Locust, headless and bounded, against a running
service; Locust's CSV and HTML report go to ``results/locust/<UTC time>/``.

Fixed users (``PRERANK_LOAD_LOCUST_USERS`` for ``PRERANK_LOAD_SECONDS``) or, with ``--shape``, the
ramp/steady/spike shape of ``loadtest/shape.py``. Prints where the reports are and one summary
line read back from the CSV. Exits 1 when a request failed (or none was answered), 2 when the
settings are invalid, the catalogue is missing or the service is not ready.
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from loadtest.settings import REPO_ROOT, LoadSettings
from loadtest.workload import DEGRADED_REQUEST_NAME, shape_stages
from prerank_contract.settings import ENV_PREFIX, load_settings

LOCUSTFILE = REPO_ROOT / "loadtest" / "locustfile.py"
SHAPE_LOCUSTFILE = REPO_ROOT / "loadtest" / "shape.py"
CSV_PREFIX = "locust"  # locust_stats.csv, locust_stats_history.csv, locust_failures.csv, ...
HTML_REPORT = "report.html"
AGGREGATED = "Aggregated"  # Locust's name of the all-requests row
READY_TIMEOUT_SECONDS = 5.0  # the /readyz check before the run
# Past the planned run: Locust's start (imports, the body pool) and its final report.
LOCUST_GRACE_SECONDS = 60.0


@dataclass(frozen=True)
class LoadSummary:
    """The all-requests row of Locust's stats CSV."""

    requests: int
    failures: int
    degraded: int
    p50_ms: float
    p99_ms: float
    requests_per_second: float

    def line(self) -> str:
        return (
            f"{self.requests} requests, {self.failures} failures ({self.degraded} degraded), "
            f"p50 {self.p50_ms:.0f} ms, p99 {self.p99_ms:.0f} ms, "
            f"{self.requests_per_second:.1f} req/s"
        )


def planned_seconds(settings: LoadSettings) -> float:
    """How long the load runs: the shape's stages, or the fixed-users duration."""
    if settings.load_shape:
        return sum(stage.seconds for stage in shape_stages(settings))
    return float(settings.load_seconds)


def describe(settings: LoadSettings) -> str:
    if settings.load_shape:
        stages = shape_stages(settings)
        return "shape: " + ", ".join(f"{s.name} {s.seconds:g} s at {s.users} users" for s in stages)
    return f"{settings.load_seconds} s, {settings.load_locust_users} users"


def locust_command(settings: LoadSettings, out: Path) -> list[str]:
    """Headless Locust writing CSV (with per-second history) and HTML into `out`."""
    command = [sys.executable, "-m", "locust", "--headless", "--host", settings.load_host]
    if settings.load_shape:
        command += ["-f", str(SHAPE_LOCUSTFILE)]  # the shape sets users and ends the run
    else:
        users = settings.load_locust_users
        spawn_rate = settings.load_spawn_rate or users
        command += ["-f", str(LOCUSTFILE), "-u", str(users), "-r", f"{spawn_rate:g}"]
        command += ["--run-time", f"{settings.load_seconds}s"]
    return [
        *command,
        *("--stop-timeout", str(settings.load_stop_timeout_seconds)),
        *("--csv", str(out / CSV_PREFIX), "--csv-full-history"),
        *("--html", str(out / HTML_REPORT), "--only-summary", "--loglevel", "WARNING"),
    ]


def settings_env(overrides: dict[str, Any]) -> dict[str, str]:
    """The command-line overrides as PRERANK_* variables, for the Locust process's settings."""
    return {
        f"{ENV_PREFIX}{name.upper()}": str(value).lower() if isinstance(value, bool) else str(value)
        for name, value in overrides.items()
    }


def read_summary(out: Path) -> LoadSummary:
    with (out / f"{CSV_PREFIX}_stats.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    totals = next(row for row in rows if row["Name"] == AGGREGATED)

    def milliseconds(column: str) -> float:
        value = totals[column]
        return float(value) if value not in ("", "N/A") else math.nan

    return LoadSummary(
        requests=int(totals["Request Count"]),
        failures=int(totals["Failure Count"]),
        degraded=sum(int(r["Request Count"]) for r in rows if r["Name"] == DEGRADED_REQUEST_NAME),
        p50_ms=milliseconds("50%"),
        p99_ms=milliseconds("99%"),
        requests_per_second=float(totals["Requests/s"]),
    )


def service_problem(host: str) -> str | None:
    """Why the service at `host` cannot take the load now, or None when /readyz answers 200."""
    try:
        response = httpx.get(f"{host.rstrip('/')}/readyz", timeout=READY_TIMEOUT_SECONDS)
    except httpx.HTTPError as exc:
        return f"no answer from {host}: {exc}"
    if response.status_code != 200:
        return f"{host}/readyz answered {response.status_code}: {response.text[:300]}"
    return None


def run(settings: LoadSettings, out: Path, env: dict[str, str]) -> int:
    """Run Locust into `out`, print the summary; the exit status."""
    out.mkdir(parents=True, exist_ok=True)
    planned = planned_seconds(settings)
    print(f"load: {settings.load_host}, {describe(settings)}; reports in {out}", flush=True)
    try:
        locust = subprocess.run(
            locust_command(settings, out),
            cwd=REPO_ROOT,
            env={**os.environ, **env},
            timeout=planned + settings.load_stop_timeout_seconds + LOCUST_GRACE_SECONDS,
        )
    except subprocess.TimeoutExpired:
        print(f"error: Locust ran past {planned:.0f} s and was stopped", file=sys.stderr)
        return 1
    if not (out / f"{CSV_PREFIX}_stats.csv").is_file():
        print(f"error: Locust exited {locust.returncode} without a report", file=sys.stderr)
        return 1
    summary = read_summary(out)
    print(
        f"reports: {out / HTML_REPORT}, {out / CSV_PREFIX}_stats.csv (and _stats_history.csv, "
        "_failures.csv)"
    )
    print(f"summary: {summary.line()}")
    if summary.requests == 0 or summary.failures > 0 or locust.returncode != 0:
        print(f"error: load failed (Locust exit status {locust.returncode})", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.run", description=__doc__)
    parser.add_argument("--host", help="service URL (PRERANK_LOAD_HOST)")
    parser.add_argument("--seconds", type=int, help="fixed-users duration (PRERANK_LOAD_SECONDS)")
    parser.add_argument("--users", type=int, help="fixed Locust users (PRERANK_LOAD_LOCUST_USERS)")
    parser.add_argument("--spawn-rate", type=float, help="users/s (PRERANK_LOAD_SPAWN_RATE)")
    parser.add_argument(
        "--shape",
        action=argparse.BooleanOptionalAction,
        help="ramp/steady/spike shape instead of fixed users (PRERANK_LOAD_SHAPE)",
    )
    parser.add_argument("--bundle", type=Path, help="catalogue bundle (PRERANK_LOAD_BUNDLE_DIR)")
    parser.add_argument(
        "--out", type=Path, help="report folder (default: PRERANK_LOAD_RESULTS_DIR/<UTC time>)"
    )
    args = parser.parse_args(argv)
    overrides = {
        name: value
        for name, value in (
            ("load_host", args.host),
            ("load_seconds", args.seconds),
            ("load_locust_users", args.users),
            ("load_spawn_rate", args.spawn_rate),
            ("load_shape", args.shape),
            ("load_bundle_dir", args.bundle),
        )
        if value is not None
    }
    settings = load_settings(LoadSettings, **overrides)
    try:
        settings.catalogue()
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    problem = service_problem(settings.load_host)
    if problem is not None:
        print(f"error: service not ready: {problem}", file=sys.stderr)
        return 2
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = args.out or settings.load_results_dir / stamp
    return run(settings, out, settings_env(overrides))


if __name__ == "__main__":
    sys.exit(main())
