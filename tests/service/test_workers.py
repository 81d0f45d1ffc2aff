"""Two worker processes on one port (PRERANK_WORKERS=2): both answer, /metrics of either sums
both exactly (prometheus_client multiprocess mode; warm-up leaves no trace), both map the same
cached item table, and SIGTERM stops the whole service cleanly."""

from __future__ import annotations

import re
import signal
from pathlib import Path

import httpx

from prerank_contract.http import WORKER_HEADER
from prerank_contract.manifest import ITEM_HEADS_FILE
from tests.conftest import start_service
from tests.service.stages import STAGES

REQUESTS = 80
CANDIDATES = 40
EXIT_TIMEOUT = 30.0


def metric(text: str, name: str, labels: str = "") -> float:
    """The one sample `name{labels}`; labels as written in the exposition, in order."""
    pattern = rf"^{re.escape(name)}{{{re.escape(labels)}}} (\S+)$" if labels else rf"^{name} (\S+)$"
    found = re.findall(pattern, text, flags=re.MULTILINE)
    assert len(found) == 1, (name, labels, found)
    return float(found[0])


def test_two_workers_answer_and_their_metrics_add_up(
    published_fit, key_prefix: str, tiny_data, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    service = start_service(
        {
            "PRERANK_REDIS_KEY_PREFIX": key_prefix,
            "PRERANK_WORKERS": "2",
            "PRERANK_BUNDLE_CACHE_DIR": str(cache),
        },
        tmp_path / "service.log",
    )
    try:
        body = {
            "user_id": int(tiny_data.user_ids[0]),
            "candidates": tiny_data.catalogue[:CANDIDATES].tolist(),
        }
        workers: dict[str, int] = {}
        for _ in range(REQUESTS):  # a new connection each: the kernel spreads them over workers
            response = httpx.post(f"{service.url}/prerank", json=body, timeout=30)
            assert response.status_code == 200, service.log()
            worker = response.headers[WORKER_HEADER]
            workers[worker] = workers.get(worker, 0) + 1
        scrapes = [httpx.get(f"{service.url}/metrics").text for _ in range(6)]
        maps = {pid: Path(f"/proc/{pid}/maps").read_text() for pid in workers}
        service.process.send_signal(signal.SIGTERM)
        exit_code = service.process.wait(timeout=EXIT_TIMEOUT)
    finally:
        service.stop()
    assert len(workers) == 2, workers
    for text in scrapes:  # whichever worker answers the scrape, the sums are of both
        arm = 'arm="control"'
        assert metric(text, "prerank_requests_total", f'{arm},status="200"') == REQUESTS
        assert metric(text, "prerank_request_seconds_count", arm) == REQUESTS
        for stage in STAGES:
            assert metric(text, "prerank_stage_seconds_count", f'{arm},stage="{stage}"') == REQUESTS
        assert metric(text, "prerank_candidates_sum", arm) == REQUESTS * CANDIDATES
        assert metric(text, "prerank_in_flight") == 0
        version = published_fit.manifest.version
        active = f'arm="control",model="fit",version="{version}"'
        assert metric(text, "prerank_active_version", active) == 1
    # both workers map the one cached copy of the item table
    cached_heads = str((cache / published_fit.manifest.version / ITEM_HEADS_FILE).resolve())
    assert all(cached_heads in text for text in maps.values()), cached_heads
    assert exit_code == 0, service.log()
