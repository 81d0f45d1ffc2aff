"""``python -m research.memory``: memory of each worker at a 1M-item catalogue.

Builds a bundle whose item table is a real FIT bundle's, tiled to `memory_items` items (the same
graphs; only the table's size matters here), serves it with 1 and with 2 workers from a local
bundle directory, answers a few requests, and reports each worker's RSS, PSS (shared pages split
between the processes that map them) and USS (pages only that process holds). With the table
memory-mapped, a second worker adds its USS, not another table. Writes docs/benchmarks/memory.md.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from pathlib import Path

import httpx
import numpy as np
from pydantic import Field

from loadtest.settings import LoadSettings
from offline_jobs.bundling.writer import write_bundle
from prerank_contract.bundle import verify_bundle_dir, write_text_atomically
from prerank_contract.http import WORKER_HEADER
from prerank_contract.manifest import (
    ITEM_FEATURES_FILE,
    ITEM_HEADS_FILE,
    ITEM_IDS_FILE,
    MANIFEST_FILE,
    META_INDEX_FILE,
    Manifest,
)
from prerank_contract.settings import ENV_PREFIX, configure_logging, load_settings
from research.service_process import ServiceProcess
from research.settings import REPO_ROOT

log = logging.getLogger("research.memory")

MIB = 2**20


class MemorySettings(LoadSettings):
    """The catalogue size, the worker counts and where the report goes."""

    memory_items: int = Field(default=1_000_000, ge=1, description="catalogue size measured")
    memory_workers: tuple[int, ...] = Field(default=(1, 2), description="worker counts measured")
    memory_requests: int = Field(default=50, ge=1, description="requests answered before reading")
    memory_ready_timeout_seconds: float = Field(
        default=600.0, gt=0, description="longest start (load, verify, warm-up) of the service"
    )
    memory_report: Path = Field(
        default=REPO_ROOT / "docs" / "benchmarks" / "memory.md", description="report path"
    )


def tiled_bundle(source: Path, bundles_dir: Path, items: int) -> Path:
    """A copy of the bundle at `source` whose item table is tiled to `items` rows (ids 1..items)."""
    manifest = verify_bundle_dir(source)
    tables = {
        name: np.load(source / name, allow_pickle=False)
        for name in (ITEM_HEADS_FILE, META_INDEX_FILE, ITEM_FEATURES_FILE)
    }
    rows = np.arange(items) % manifest.item_count

    def fill(target: Path) -> Manifest:
        for name in manifest.files:
            if name not in tables and name != ITEM_IDS_FILE:
                (target / name).write_bytes((source / name).read_bytes())
        np.save(target / ITEM_IDS_FILE, np.arange(1, items + 1, dtype=np.int64))
        for name, table in tables.items():
            np.save(target / name, table[rows])
        return manifest.model_copy(
            update={"version": f"{manifest.version}-x{items}", "item_count": items}
        )

    path, _ = write_bundle(bundles_dir, f"{manifest.version}-x{items}", fill)
    return path


def measure(settings: MemorySettings, bundle: Path, workers: int, scratch: Path) -> list[dict]:
    """Serve `bundle` with `workers` workers; each worker's memory after the requests."""
    env = {
        f"{ENV_PREFIX}USE_REDIS": "false",
        f"{ENV_PREFIX}BUNDLE_DIR": str(bundle),
        f"{ENV_PREFIX}WORKERS": str(workers),
        f"{ENV_PREFIX}SHUTDOWN_DRAIN_SECONDS": "0",
        f"{ENV_PREFIX}LOG_LEVEL": "warning",
    }
    service = ServiceProcess.from_env(
        env,
        scratch / f"service-{workers}.log",
        start_timeout_seconds=settings.memory_ready_timeout_seconds,
    )
    with service:
        rng = np.random.default_rng(settings.load_seed)
        answered = set()
        for _ in range(settings.memory_requests):
            ids = (
                rng.choice(settings.memory_items, size=settings.load_candidates, replace=False) + 1
            )
            response = httpx.post(
                f"{service.url}/prerank",
                json={"user_id": 1, "candidates": ids.tolist()},
                timeout=60,
            )
            response.raise_for_status()
            answered.add(response.headers.get(WORKER_HEADER))
        root, *forked = service.processes()
        serving = forked if workers > 1 else [root]  # with workers, the root only supervises
        figures = []
        for worker in serving:
            info = worker.memory_full_info()
            figures.append(
                {
                    "workers": workers,
                    "pid": worker.pid,
                    "rss_mib": info.rss / MIB,
                    "pss_mib": info.pss / MIB,
                    "uss_mib": info.uss / MIB,
                    "answered": str(worker.pid) in answered,
                }
            )
        return figures


def report(settings: MemorySettings, bundle: Path, figures: list[dict]) -> str:
    table_mib = (
        sum(
            (bundle / name).stat().st_size
            for name in (ITEM_IDS_FILE, ITEM_HEADS_FILE, META_INDEX_FILE, ITEM_FEATURES_FILE)
        )
        / MIB
    )
    lines = [
        "# Memory per worker at a large catalogue",
        "",
        f"Generated by `python -m research.memory` (`make bench-memory`): a FIT bundle's item "
        f"table tiled to {settings.memory_items:,} items ({table_mib:.0f} MiB of item table "
        f"files), served from a local bundle directory, after {settings.memory_requests} "
        f"requests of {settings.load_candidates:,} candidates. PSS splits shared pages between "
        "the processes mapping them; USS counts the pages only that process holds.",
        "",
        "| workers | pid | answered requests | RSS MiB | PSS MiB | USS MiB |",
        "|---|---|---|---|---|---|",
    ]
    for f in figures:
        lines.append(
            f"| {f['workers']} | {f['pid']} | {'yes' if f['answered'] else 'no'} | "
            f"{f['rss_mib']:.0f} | {f['pss_mib']:.0f} | {f['uss_mib']:.0f} |"
        )
    by_count: dict[int, float] = {}
    for f in figures:
        by_count[f["workers"]] = by_count.get(f["workers"], 0.0) + f["pss_mib"]
    lines += [
        "",
        "Total PSS (the service's real footprint) by worker count: "
        + ", ".join(
            f"{count} worker(s) {total:.0f} MiB" for count, total in sorted(by_count.items())
        )
        + ".",
    ]
    return "\n".join(lines) + "\n"


def newest_fit_bundle(bundles_dir: Path) -> Path:
    candidates = sorted(p for p in bundles_dir.glob("fit-*") if (p / MANIFEST_FILE).is_file())
    if not candidates:
        raise FileNotFoundError(f"{bundles_dir}: no fit-* bundle; run `make train` first")
    return max(candidates, key=lambda p: p.stat().st_mtime)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m research.memory", description=__doc__)
    parser.add_argument("--items", type=int, help="catalogue size (PRERANK_MEMORY_ITEMS)")
    args = parser.parse_args(argv)
    configure_logging(logging.INFO)
    overrides = {"memory_items": args.items} if args.items is not None else {}
    settings = load_settings(MemorySettings, **overrides)
    source = newest_fit_bundle(REPO_ROOT / "artifacts" / "bundles")
    with tempfile.TemporaryDirectory(prefix="memory-") as scratch_dir:
        scratch = Path(scratch_dir)
        log.info("tiling %s to %d items", source.name, settings.memory_items)
        bundle = tiled_bundle(source, scratch / "bundles", settings.memory_items)
        figures = []
        for workers in settings.memory_workers:
            log.info("serving with %d worker(s)", workers)
            figures += measure(settings, bundle, workers, scratch)
        text = report(settings, bundle, figures)
    write_text_atomically(settings.memory_report, text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
