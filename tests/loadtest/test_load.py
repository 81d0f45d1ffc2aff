"""Realistic Locust traffic and the headless load command: the drawn bodies follow the size
distribution and the unknown/duplicate shares, user ids are the feature store's published users,
the shape's stages give the planned user counts, and `python -m loadtest.run` drives the real
service and writes Locust's CSV and HTML report (exit 1 once a request fails)."""

from __future__ import annotations

import csv
import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from loadtest import run as load_run
from loadtest.settings import LoadSettings
from loadtest.workload import draw_bodies, shape_stages, user_pool
from offline_jobs.data.dataset import InteractionData
from research.service_process import ServiceProcess, free_port
from tests.conftest import REDIS_URL, REPO_ROOT, Bundle

SERVICE_MAX_CANDIDATES = 500  # the `service` fixture's PRERANK_MAX_CANDIDATES
SIZES = {"load_candidates": 100, "load_candidates_min": 30, "load_candidates_max": 250}
SUMMARY = re.compile(r"summary: (\d+) requests, (\d+) failures")
# A short shape: 2 users ramped over 1 s, held 1 s, a 2 s spike to 5, 2 s back at 2.
SHORT_SHAPE = {
    "load_shape_ramp_seconds": 1,
    "load_shape_users": 2,
    "load_shape_steady_seconds": 1,
    "load_shape_spike_users": 5,
    "load_shape_spike_seconds": 2,
    "load_shape_spike_spawn_rate": 10,
    "load_shape_recovery_seconds": 2,
}


def load_settings(bundle: Path, **fields: object) -> LoadSettings:
    return LoadSettings(load_bundle_dir=bundle, redis_url=REDIS_URL, **fields)


def as_env(fields: dict[str, object]) -> dict[str, str]:
    return {f"PRERANK_{name.upper()}": str(value) for name, value in fields.items()}


def drawn(settings: LoadSettings, count: int, user_ids: np.ndarray) -> list[dict]:
    return [orjson.loads(body) for body in draw_bodies(settings, count, user_ids)]


def test_bodies_follow_the_size_distribution_and_the_shares(fit_bundle: Bundle) -> None:
    settings = load_settings(
        fit_bundle.path,
        **SIZES,
        load_candidates_sigma=0.5,
        load_unknown_share=0.1,
        load_duplicate_share=0.05,
        load_history=5,
        load_top_k=7,
    )
    catalogue = set(settings.catalogue().tolist())
    bodies = drawn(settings, 400, np.arange(1, 11))
    sizes = np.array([len(b["candidates"]) for b in bodies])
    assert sizes.min() >= 30 and sizes.max() <= 250
    assert sizes.min() < 60 and sizes.max() > 180  # really spread, not one size
    assert 85 <= np.median(sizes) <= 115
    ids = [b["candidates"] for b in bodies]
    unknown = sum(sum(i not in catalogue for i in c) for c in ids) / sizes.sum()
    duplicates = sum(len(c) - len(set(c)) for c in ids) / sizes.sum()
    assert unknown == pytest.approx(0.1, abs=0.01)
    assert duplicates == pytest.approx(0.05, abs=0.01)
    assert all(any(i in catalogue for i in c) for c in ids)  # every answer has items
    assert all(len(b["history"]) == 5 and set(b["history"]) <= catalogue for b in bodies)
    assert {b["top_k"] for b in bodies} == {7}
    assert draw_bodies(settings, 5, np.arange(1, 11)) == draw_bodies(settings, 5, np.arange(1, 11))


def test_default_sizes_are_fixed_and_capped_by_the_catalogue(fit_bundle: Bundle) -> None:
    """sigma 0 (the default) keeps every list at load_candidates, as the soak's service limit
    expects; no history is sent at load_history 0, so the feature store's is used."""
    fixed = load_settings(fit_bundle.path, load_candidates=120, load_history=0)
    assert {len(b["candidates"]) for b in drawn(fixed, 50, np.arange(3))} == {120}
    assert not any("history" in b for b in drawn(fixed, 50, np.arange(3)))
    catalogue_size = fixed.catalogue().size
    large = load_settings(fit_bundle.path, load_candidates=catalogue_size * 4)
    assert {len(b["candidates"]) for b in drawn(large, 10, np.arange(3))} == {catalogue_size}


def test_user_ids_are_the_published_users(
    published_fit: Bundle, tiny_data: InteractionData, key_prefix: str
) -> None:
    settings = load_settings(published_fit.path, redis_key_prefix=key_prefix, load_bodies=300)
    published = set(range(1, tiny_data.num_users + 1))  # what publish_user_features wrote
    assert set(user_pool(settings).tolist()) == published
    users = {
        orjson.loads(body)["user_id"] for body in draw_bodies(settings, 300, user_pool(settings))
    }
    assert users <= published and len(users) > tiny_data.num_users / 2


@pytest.mark.parametrize("redis", ["no records", "unreachable"])
def test_without_published_users_ids_come_from_the_range_and_the_log_says_so(
    fit_bundle: Bundle, redis: str, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0" if redis == "unreachable" else REDIS_URL
    settings = LoadSettings(
        load_bundle_dir=fit_bundle.path,
        redis_url=url,
        redis_key_prefix="load-test-nobody:",
        redis_timeout_seconds=1,
        load_users=50,
    )
    with caplog.at_level(logging.WARNING, logger="loadtest.workload"):
        assert user_pool(settings).tolist() == list(range(50))
    assert "user ids drawn from [0, 50) instead" in caplog.text


def test_the_shape_ticks_through_ramp_steady_spike_and_recovery() -> None:
    """PrerankShape.tick() against a fake clock, in a process of its own (Locust monkey-patches
    the process that imports it)."""
    stages = {
        "load_shape_ramp_seconds": 10,
        "load_shape_users": 4,
        "load_shape_steady_seconds": 20,
        "load_shape_spike_users": 12,
        "load_shape_spike_seconds": 5,
        "load_shape_spike_spawn_rate": 8,
        "load_shape_recovery_seconds": 10,
    }
    times = [0, 9.9, 10, 29.9, 30, 34.9, 35, 44.9, 45, 100]
    script = (
        "import json, sys\n"
        "from loadtest.shape import PrerankShape\n"
        "shape = PrerankShape()\n"
        "ticks = []\n"
        "for t in map(float, sys.argv[1:]):\n"
        "    shape.get_run_time = lambda t=t: t\n"
        "    ticks.append(shape.tick())\n"
        "print(json.dumps(ticks))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("PRERANK_")} | as_env(stages)
    result = subprocess.run(
        [sys.executable, "-c", script, *map(str, times)],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    ticks = json.loads(result.stdout.splitlines()[-1])
    ramp, spike, recovery = [4, 0.4], [12, 8], [4, 8]
    assert ticks == [ramp, ramp, ramp, ramp, spike, spike, recovery, recovery, None, None]
    no_spike = LoadSettings(**{**stages, "load_shape_spike_seconds": 0})
    assert [s.name for s in shape_stages(no_spike)] == ["ramp", "steady", "recovery"]


def user_sources(url: str) -> dict[str, float]:
    """The service's answers so far by where the user's features came from."""
    text = httpx.get(f"{url}/metrics", timeout=10).text
    family = next(
        f for f in text_string_to_metric_families(text) if f.name == "prerank_user_source"
    )
    counts: dict[str, float] = {}
    for sample in family.samples:
        if sample.name.endswith("_total"):
            source = sample.labels["source"]
            counts[source] = counts.get(source, 0.0) + sample.value
    return counts


def run_load(
    args: list[str], fields: dict[str, object], key_prefix: str
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PRERANK_")}
    env |= {"PRERANK_REDIS_URL": REDIS_URL, "PRERANK_REDIS_KEY_PREFIX": key_prefix}
    return subprocess.run(
        [sys.executable, "-m", "loadtest.run", *args],
        cwd=REPO_ROOT,
        env=env | as_env(fields),
        capture_output=True,
        text=True,
        timeout=120,
    )


def aggregated(out: Path, name: str) -> list[dict[str, str]]:
    with (out / name).open() as handle:
        return [row for row in csv.DictReader(handle) if row["Name"] == load_run.AGGREGATED]


@pytest.mark.parametrize("shape", [False, True], ids=["fixed-users", "shape"])
def test_a_headless_run_writes_csv_and_html_with_no_failure(
    service: ServiceProcess, published_fit: Bundle, key_prefix: str, tmp_path: Path, shape: bool
) -> None:
    out = tmp_path / "report"
    fields = {**SIZES, "load_candidates_sigma": 0.5, **(SHORT_SHAPE if shape else {})}
    args = ["--host", service.url, "--bundle", str(published_fit.path), "--out", str(out)]
    args += ["--shape"] if shape else ["--seconds", "5", "--users", "2"]
    before = user_sources(service.url)
    result = run_load(args, fields, key_prefix)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    (totals,) = aggregated(out, f"{load_run.CSV_PREFIX}_stats.csv")
    requests = int(totals["Request Count"])
    assert requests > 100 and int(totals["Failure Count"]) == 0
    assert "Locust" in (out / load_run.HTML_REPORT).read_text()
    summary = SUMMARY.search(result.stdout)
    assert summary is not None and summary.groups() == (str(requests), "0"), result.stdout
    assert f"reports: {out / load_run.HTML_REPORT}" in result.stdout
    served = user_sources(service.url)
    from_store = served.get("feature_store", 0.0) - before.get("feature_store", 0.0)
    assert from_store >= 0.9 * requests  # published users: their features came from Redis
    users_over_time = [int(r["User Count"]) for r in aggregated(out, "locust_stats_history.csv")]
    if shape:  # ramp to 2, spike to 5, back to 2
        assert max(users_over_time) == 5, users_over_time
        assert 2 in users_over_time[users_over_time.index(5) :], users_over_time
    else:
        assert set(users_over_time) <= {0, 1, 2} and 2 in users_over_time


def test_a_failed_request_fails_the_run(
    service: ServiceProcess, published_fit: Bundle, key_prefix: str, tmp_path: Path
) -> None:
    """Histories past the service's PRERANK_MAX_REQUEST_HISTORY are refused (422): exit 1."""
    out = tmp_path / "report"
    args = ["--host", service.url, "--bundle", str(published_fit.path), "--out", str(out)]
    args += ["--seconds", "2", "--users", "1"]
    result = run_load(args, {**SIZES, "load_history": 1001}, key_prefix)
    assert result.returncode == 1, result.stdout + result.stderr
    (totals,) = aggregated(out, f"{load_run.CSV_PREFIX}_stats.csv")
    assert int(totals["Failure Count"]) == int(totals["Request Count"]) > 0
    assert "error: load failed" in result.stderr


def test_no_ready_service_is_a_usage_error(
    fit_bundle: Bundle, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    nobody = f"http://127.0.0.1:{free_port()}"
    status = load_run.main(
        ["--host", nobody, "--bundle", str(fit_bundle.path), "--out", str(tmp_path)]
    )
    assert status == 2
    assert "service not ready" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("wire_format", ["msgpack", "columnar_json"])
def test_a_headless_run_speaks_the_chosen_wire_format(
    service: ServiceProcess,
    published_fit: Bundle,
    key_prefix: str,
    tmp_path: Path,
    wire_format: str,
) -> None:
    """Every answer is read in the chosen format (a JSON answer read as MessagePack, or one
    without `item_ids`, would be a failure), and none fails."""
    out = tmp_path / "report"
    args = ["--host", service.url, "--bundle", str(published_fit.path), "--out", str(out)]
    args += ["--seconds", "3", "--users", "1"]
    result = run_load(args, {**SIZES, "load_wire_format": wire_format}, key_prefix)
    assert result.returncode == 0, result.stdout + result.stderr
    (totals,) = aggregated(out, f"{load_run.CSV_PREFIX}_stats.csv")
    assert int(totals["Request Count"]) > 0 and int(totals["Failure Count"]) == 0
