"""``python -m research.soak``: bounded Locust load on a real service, with a hot swap midway.

Publishes the bundle twice under its own key prefix (two version ids), starts the service, drives
it with Locust (headless, its CSV history read back), activates the second version at half time,
and samples each service process's RSS every second. Reports errors (must be 0), the p99 drift
(the last window's p99 over the first window's after warm-up) and the RSS growth of each process
after warm-up (must stay within `soak_max_rss_growth`); exits 1 when a limit is broken.
"""

from __future__ import annotations

import argparse
import csv
import logging
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import orjson
import psutil
from prometheus_client.parser import text_string_to_metric_families
from pydantic import Field

from loadtest.settings import LoadSettings
from offline_jobs.bundling.writer import relabel_bundle
from offline_jobs.release.commands import publish_version
from offline_jobs.settings import JobSettings
from prerank_contract.bundle import write_text_atomically
from prerank_contract.redis_client import RedisClient
from prerank_contract.settings import ENV_PREFIX, configure_logging, load_settings
from research.service_process import ServiceProcess
from research.settings import REPO_ROOT

log = logging.getLogger("research.soak")

LOCUSTFILE = REPO_ROOT / "loadtest" / "locustfile.py"
AGGREGATED = "Aggregated"  # Locust's name of the all-requests row


class SoakSettings(LoadSettings):
    """How long and how hard; the limits a soak must hold."""

    soak_seconds: float = Field(default=600.0, ge=10, description="load duration")
    soak_users: int = Field(default=8, ge=1, description="concurrent Locust users")
    soak_warmup_fraction: float = Field(
        default=0.2, gt=0, lt=0.5, description="share of the run before RSS and p99 baselines"
    )
    soak_window_seconds: float = Field(
        default=10.0, gt=0, description="width of the first and last p99 windows"
    )
    soak_max_rss_growth: float = Field(
        default=0.05, ge=0, description="largest RSS growth of a service process after warm-up"
    )
    soak_key_prefix: str = Field(
        default="prerank-soak:", description="Redis key prefix of the soak's own versions"
    )
    soak_report: Path = Field(
        default=REPO_ROOT / "results" / "soak.json", description="where the report is written"
    )


@dataclass(frozen=True)
class SoakReport:
    seconds: float
    users: int
    requests: int
    errors: int  # failed requests as Locust saw them
    service_errors: int  # non-200 answers as the service counted them
    degraded: int
    requests_per_second: float
    p99_first_ms: float
    p99_last_ms: float
    p99_drift: float
    rss_mib: dict[str, list[float]]  # process -> [after warm-up, end]
    rss_growth: dict[str, float]
    swapped_to: str | None
    limits_held: bool


def locust_command(settings: SoakSettings, url: str, csv_prefix: Path) -> list[str]:
    users = str(settings.soak_users)
    return [
        *(sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless"),
        *("--host", url, "-u", users, "-r", users),
        *("--run-time", f"{int(settings.soak_seconds)}s", "--stop-timeout", "5"),
        *("--csv", str(csv_prefix), "--csv-full-history", "--only-summary"),
        *("--loglevel", "WARNING"),
    ]


def rss_mib(processes: list[psutil.Process]) -> dict[str, float]:
    sizes = {}
    for process in processes:
        try:
            sizes[f"pid {process.pid}"] = process.memory_info().rss / 2**20
        except psutil.NoSuchProcess:
            continue
    return sizes


def read_history(csv_prefix: Path) -> list[dict[str, str]]:
    """Locust's per-second rows of all requests (percentiles over its ~10 s current window)."""
    with Path(f"{csv_prefix}_stats_history.csv").open() as handle:
        return [row for row in csv.DictReader(handle) if row["Name"] == AGGREGATED]


def read_totals(csv_prefix: Path) -> dict[str, str]:
    with Path(f"{csv_prefix}_stats.csv").open() as handle:
        return next(row for row in csv.DictReader(handle) if row["Name"] == AGGREGATED)


def window_p99(rows: list[dict[str, str]], start: float, stop: float) -> float:
    """The largest current p99 (ms) Locust reported between start and stop (Unix seconds)."""
    values = [float(r["99%"]) for r in rows if start <= float(r["Timestamp"]) <= stop]
    values = [v for v in values if v > 0]
    return max(values) if values else float("nan")


def served_counts(url: str) -> tuple[int, int]:
    """(non-200 answers, degraded answers) as the service's own /metrics counted them."""
    families = {
        family.name: family
        for family in text_string_to_metric_families(httpx.get(f"{url}/metrics", timeout=10).text)
    }
    failed = sum(
        sample.value
        for sample in families["prerank_requests"].samples
        if sample.name.endswith("_total") and sample.labels["status"] != "200"
    )
    degraded = sum(
        sample.value
        for sample in families["prerank_degraded_answers"].samples
        if sample.name.endswith("_total")
    )
    return int(failed), int(degraded)


def soak(settings: SoakSettings) -> SoakReport:
    """Run the soak; the report says whether the limits held."""
    job = JobSettings(redis_key_prefix=settings.soak_key_prefix, gate=settings.gate)
    client = job.connect_redis()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    with tempfile.TemporaryDirectory(prefix="soak-") as scratch_dir:
        scratch = Path(scratch_dir)
        first, _ = relabel_bundle(settings.load_bundle_dir, scratch / "bundles", f"soak-{stamp}-a")
        second, _ = relabel_bundle(settings.load_bundle_dir, scratch / "bundles", f"soak-{stamp}-b")
        publish_version(job, client, first, progress=False)
        publish_version(job, client, second, activate=False, progress=False)
        csv_prefix = scratch / "locust"
        with ServiceProcess(
            job,
            job.keys,
            scratch / "service.log",
            max_candidates=max(settings.load_candidates, settings.load_candidates_max or 0),
        ) as service:
            log.info("service at %s; Locust for %.0f s", service.url, settings.soak_seconds)
            report = drive(settings, job, client, service, service.processes(), csv_prefix, second)
    write_text_atomically(settings.soak_report, orjson.dumps(asdict(report)).decode())
    client.close()
    return report


def drive(
    settings: SoakSettings,
    job: JobSettings,
    client: RedisClient,
    service: ServiceProcess,
    processes: list[psutil.Process],
    csv_prefix: Path,
    second: Path,
) -> SoakReport:
    """Load, swap at half time, sample RSS; then read Locust's CSVs back."""
    env = {f"{ENV_PREFIX}LOAD_BUNDLE_DIR": str(settings.load_bundle_dir)}
    started = time.time()
    warm_at = started + settings.soak_seconds * settings.soak_warmup_fraction
    swap_at = started + settings.soak_seconds / 2
    baseline: dict[str, float] = {}
    swapped_to = None
    locust = subprocess.Popen(
        locust_command(settings, service.url, csv_prefix),
        cwd=REPO_ROOT,
        env={**os.environ, **env},
    )
    try:
        while locust.poll() is None:
            now = time.time()
            if not baseline and now >= warm_at:
                baseline = rss_mib(processes)
                log.info("RSS after warm-up: %s", baseline)
            if swapped_to is None and now >= swap_at:
                publish_version(job, client, second, progress=False)
                swapped_to = second.name
                service.wait_for_version(swapped_to)
                log.info("hot swap to %s done", swapped_to)
            time.sleep(1.0)
    finally:
        if locust.poll() is None:
            locust.terminate()
        locust.wait()
    ended = time.time()
    final = rss_mib(processes)
    rows = read_history(csv_prefix)
    totals = read_totals(csv_prefix)
    window = settings.soak_window_seconds
    p99_first = window_p99(rows, warm_at, warm_at + window)
    p99_last = window_p99(rows, ended - window, ended)
    growth = {name: final[name] / baseline[name] - 1 for name in baseline if name in final}
    errors = int(totals["Failure Count"]) + (locust.returncode not in (0, 1)) * 1
    service_errors, degraded = served_counts(service.url)
    held = (
        errors == 0
        and service_errors == 0
        and all(g <= settings.soak_max_rss_growth for g in growth.values())
    )
    held = held and bool(growth) and swapped_to is not None
    return SoakReport(
        seconds=round(ended - started, 1),
        users=settings.soak_users,
        requests=int(totals["Request Count"]),
        errors=errors,
        service_errors=service_errors,
        degraded=degraded,
        requests_per_second=round(float(totals["Requests/s"]), 1),
        p99_first_ms=p99_first,
        p99_last_ms=p99_last,
        p99_drift=round(p99_last / p99_first, 3),
        rss_mib={n: [round(baseline[n], 1), round(final.get(n, 0.0), 1)] for n in baseline},
        rss_growth={n: round(g, 4) for n, g in growth.items()},
        swapped_to=swapped_to,
        limits_held=held,
    )


def print_report(report: SoakReport, settings: SoakSettings) -> None:
    print(
        f"soak: {report.seconds:.0f} s, {report.users} users, {report.requests} requests "
        f"({report.requests_per_second} /s), hot swap to {report.swapped_to}"
    )
    print(
        f"  errors       {report.errors} seen by Locust, {report.service_errors} non-200 counted "
        "by the service (both must be 0)"
    )
    print(f"  degraded     {report.degraded} answers (deadline fallback or feature store)")
    print(
        f"  p99          {report.p99_first_ms:.0f} ms after warm-up -> {report.p99_last_ms:.0f} "
        f"ms at the end (drift {report.p99_drift:.2f}x)"
    )
    for name, (before, after) in report.rss_mib.items():
        print(
            f"  RSS {name}  {before:.1f} -> {after:.1f} MiB "
            f"({report.rss_growth[name]:+.2%}; limit {settings.soak_max_rss_growth:+.0%})"
        )
    print(f"  limits {'held' if report.limits_held else 'BROKEN'}; report: {settings.soak_report}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m research.soak", description=__doc__)
    parser.add_argument("--seconds", type=float, help="load duration (PRERANK_SOAK_SECONDS)")
    parser.add_argument("--users", type=int, help="Locust users (PRERANK_SOAK_USERS)")
    parser.add_argument("--bundle", type=Path, help="bundle to serve (PRERANK_LOAD_BUNDLE_DIR)")
    parser.add_argument("--report", type=Path, help="report path (PRERANK_SOAK_REPORT)")
    args = parser.parse_args(argv)
    configure_logging(logging.INFO)
    overrides = {
        name: value
        for name, value in (
            ("soak_seconds", args.seconds),
            ("soak_users", args.users),
            ("load_bundle_dir", args.bundle),
            ("soak_report", args.report),
        )
        if value is not None
    }
    settings = load_settings(SoakSettings, **overrides)
    report = soak(settings)
    print_report(report, settings)
    return 0 if report.limits_held else 1


if __name__ == "__main__":
    sys.exit(main())
